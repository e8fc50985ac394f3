"""`ddib translate` and `ddib decode`: the DDIB bridge from the command line."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from ..bridge import ode, pipeline
from ..bridge.batching import AUTO_BATCH, auto_batch_size, batch_count
from ..bridge.latent import Latent
from ..bridge.points import DEFAULT_POINT_BATCH, decode_points, require_points, sample_points, translate_points
from ..errors import DDIBError
from ..io.images import image_grid, interleave, read_images, save_png, to_pil, to_unit_range
from ..io.outputs import check_outputs, check_png, plan_outputs
from ..io.point_figures import transport_figure
from ..io.points import is_point_file, read_points, write_points
from ..likelihood.source_inference import check_method, choose_source
from ..model.registry import DomainModel, describe_bridge, load_domain_model
from ..model.speed import accelerate, describe_precision
from ..model.symmetry import describe_averaging
from ..train import distributed
from ..utils import resolve_device
from .app import app, console
from .options import (
    DeviceOpt,
    GuidanceOpt,
    Kernels,
    ModelsDirOpt,
    ResizeOpt,
    SkipBadOpt,
    SymmetryOpt,
    kernel_options,
    report_skipped,
    shards,
    solve_options,
)
from .progress import bar
from .shared_decode import decode_shared
from .source_choice import LevelsOpt, MethodOpt

# Images at least this wide take long enough per solve that the progress display shows each network evaluation.
LARGE_IMAGE = 128


@app.command("translate")
@shards
@solve_options
@kernel_options
def translate_command(
    inputs: list[Path] | None = typer.Argument(
        None, help="Image files and/or folders, or .csv/.npy point files for point domains (none: sample -n sources)"
    ),
    to: str = typer.Option(..., "--to", help="Target domain"),
    source: str | None = typer.Option(
        None,
        "--from",
        help="Source domain [default: the only other one of this shape, else inferred by likelihood]",
    ),
    out: Path | None = typer.Option(None, "--out", help="Output PNG, or .csv/.npy for points (one input only)"),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Output folder [default: next to each input]"),
    grid: Path | None = typer.Option(
        None, "--grid", help="Also write a side-by-side source → target sheet (points: source/latent/target plot)"
    ),
    save_latent: Path | None = typer.Option(None, "--save-latent", help="Write the latents to this .safetensors"),
    n: int | None = typer.Option(
        None, "-n", "--num", min=1, help="With no inputs: how many sources to sample [default: 8 images, 5000 points]"
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Images per ODE solve [default: fits the device ({AUTO_BATCH}); {DEFAULT_POINT_BATCH} points]",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled sources when no inputs are given"),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    method: str = MethodOpt,
    levels: int = LevelsOpt,
    skip_bad: bool = SkipBadOpt,
    resize: str = ResizeOpt,
    guidance: float = GuidanceOpt,
    kernels: Kernels | None = None,  # --channels-last --compile --cuda-graphs --bf16 --fp16 (kernel_options)
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Translate images: encode with the source model's ODE (t 0→1), decode with the target's (t 1→0)."""
    check_method(method)
    check_png(grid, "--grid")
    dev = resolve_device(device)
    speed = kernels.resolve(dev)
    tgt = load_domain_model(to, models_dir, dev, symmetry, guidance)
    images = pairs = None
    if inputs and not tgt.is_points:  # every input read (and outputs planned) before any solve
        pairs = plan_outputs(inputs, f"to-{tgt.name}", out, out_dir)
        images = read_images([p for p, _ in pairs], tgt.data_shape[-1], tgt.data_shape[0], skip_bad, resize)
        kept = set(images.files)
        pairs = [pair for pair in pairs if pair[0] in kept]
    probes = None if images is None else images.pixels
    src = choose_source(tgt, source, probes, models_dir, dev, method, levels, symmetry=symmetry, say=console.print)
    ode.check_compatible(src.diffusion, tgt.diffusion)
    opts = ode.resolve_steps(opts, src.diffusion, tgt.diffusion)
    if src.is_points:
        if distributed.several_processes():
            raise DDIBError("point files translate in one process (they are cheap): run without torchrun")
        _translate_points(require_points(src), require_points(tgt), inputs, out, out_dir, grid, save_latent,
                          n or 5000, opts, batch_size or DEFAULT_POINT_BATCH, seed)  # fmt: skip
        return
    _translate_images(src, tgt, images, pairs, out, out_dir, grid, save_latent, n or 8, opts, batch_size, seed, dev,
                      speed)  # fmt: skip


def _translate_images(src: DomainModel, tgt: DomainModel, images, pairs, out, out_dir, grid, save_latent, n, opts,
                      batch_size, seed, dev, speed) -> None:  # fmt: skip
    """Images (read beforehand) or sampled sources, in batches; under torchrun each rank translates its share."""
    info, dev = distributed.setup(dev)
    sampler = src.diffusion.to(dev)  # sources are sampled over the source's whole span
    src_model, tgt_model = ode.bridge_ends(sampler, tgt.diffusion.to(dev))
    src_name, to = src.name, tgt.name
    if images is None:
        if out is not None:
            raise DDIBError("--out needs one input image; with no inputs use --out-dir or --grid")
        folder = out_dir or Path(f"{src_name}-to-{to}")
        pairs = [(Path(f"sample-{i:04d}"), folder / f"{src_name}-{i:04d}-to-{to}.png") for i in range(n)]
        check_outputs(pairs)
    indices = distributed.shard(list(range(len(pairs))), info)
    batch_size = batch_size or auto_batch_size([src_model, tgt_model], dev, max(len(indices), 1))
    src_fast, tgt_fast = accelerate(src_model, speed), accelerate(tgt_model, speed)
    main = info.is_main
    if main and images is None:
        console.print(f"sampling {n} {src_name} sources (seed {seed})")
    if main and info.enabled:
        console.print(f"{info.world_size} processes: {len(pairs)} images sharded, {batch_size} per batch per process")

    stats = ode.SolveStats()
    sources, results, latents = [], [], []
    t0 = time.perf_counter()
    with bar("translate") as progress:
        if images is None:
            # All of the noise on every rank (cheap), so sample i is the same whatever the number of processes.
            noise = ode.sample_latent(sampler, n, torch.Generator().manual_seed(seed))[indices]
            sampler_fast = src_fast if sampler is src_model else accelerate(sampler, speed)
            task = progress.add_task(f"sampling {src_name}", total=len(indices), visible=main)
            on_sample = lambda p: progress.update(task, completed=p.done)  # noqa: E731
            (x,) = pipeline.collect(pipeline.decode_batches(sampler_fast, noise, opts, batch_size, on_sample))
        else:
            x = to_unit_range(images.pixels[indices])
        task = progress.add_task(f"{src_name} → {to}", total=len(pairs), visible=main)  # rank 0 speaks for all
        # Large images take minutes per batch: show each network evaluation too.
        per_eval = main and src_model.data_shape[-1] >= LARGE_IMAGE
        solve_task = progress.add_task("network evaluations", total=None, visible=per_eval)

        def on_progress(p: pipeline.Progress) -> None:
            progress.update(task, completed=p.done * info.world_size)
            if per_eval:
                progress.update(solve_task, completed=p.batch_nfe, total=p.per_batch)

        for span, latent, y in pipeline.translate_batches(src_fast, tgt_fast, x, opts, batch_size, on_progress,
                                                          stats):  # fmt: skip
            for i, img in zip(indices[span], y, strict=True):
                save_png(to_pil(img), pairs[i][1])
            if grid is not None:
                sources += list(x[span])
                results += list(y)
            if save_latent is not None:
                latents += [latent[k : k + 1] for k in range(len(latent))]
    seconds = time.perf_counter() - t0
    nfe = stats.nfe / batch_count(len(indices), batch_size)
    sources, results, latents = (distributed.gather_in_order(v, info) for v in (sources, results, latents))
    written = distributed.sum_across(len(indices), info, dev)
    distributed.teardown(info)
    if not main:
        return
    if grid is not None:
        save_png(image_grid(interleave(torch.stack(sources), torch.stack(results)), nrow=8), grid)
        console.print(f"grid: {grid}")
    if save_latent is not None:
        meta = {"source": src_name, "solver": opts.describe(), "names": [str(p) for p, _ in pairs]}
        latent = Latent.cat(latents).with_meta(**meta)
        latent.save(save_latent)
        console.print(f"latents: {save_latent}" + (" (with each image's hue)" if latent.hue is not None else ""))
    where = pairs[0][1] if len(pairs) == 1 else pairs[0][1].parent
    procs = f" on {info.world_size} processes" if info.enabled else ""
    bridge = describe_bridge(src_name, src.location, to, tgt.location)
    console.print(
        f"translated {written:.0f} image{'' if written == 1 else 's'} {bridge} with "
        f"{ode.describe_solve(opts, src_model, tgt_model)}{guided(tgt_model)}{describe_precision(speed)}{procs}: "
        f"{nfe:.0f} NFE per image"
        f"{averaging(src_model, tgt_model)}{hue_carried(src_model)}"
        f"{'' if images is None else images.describe_resize()}, "
        f"{seconds:.1f}s, "
        f"{written / seconds:.1f} images/s → "
        f"{where}"
    )
    if images is not None:
        report_skipped(images)


def averaging(*models) -> str:
    return describe_averaging(*(m.config.symmetry for m in models))


def hue_carried(source) -> str:
    """For summaries: how a hue-quotient bridge keeps the colour ('' for full models)."""
    return ", each hue carried beside its latent" if source.hue_quotient else ""


def guided(model) -> str:
    return f", guidance w = {model.guidance:g}" if model.guidance else ""


def plan_point_outputs(inputs: list[Path], suffix: str, out: Path | None, out_dir: Path | None):
    """(input file, output file) pairs for point files: `a/b.csv` → `a/b-<suffix>.csv` (or into out_dir)."""
    if out is not None and out_dir is not None:
        raise DDIBError("give either --out or --out-dir, not both")
    pairs = []
    for p in inputs:
        if p.is_dir():
            raise DDIBError(f"{p} is a folder; point domains translate .csv or .npy files")
        if not p.exists():
            raise DDIBError(f"input not found: {p}")
        if not is_point_file(p):
            raise DDIBError(f"{p}: point domains translate .csv or .npy files (N rows of x, y)")
        name = f"{p.stem}-{suffix}{p.suffix}"
        pairs.append((p, Path(out_dir) / name if out_dir is not None else p.with_name(name)))
    if out is not None:
        if len(pairs) != 1:
            raise DDIBError(f"--out names one file but there are {len(pairs)} inputs; use --out-dir")
        pairs = [(pairs[0][0], Path(out))]
    check_point_outputs(pairs)
    return pairs


def check_point_outputs(pairs: list[tuple[Path, Path]]) -> None:
    check_outputs(pairs, is_point_file, "a .csv or .npy file")


def _translate_points(src: DomainModel, tgt: DomainModel, inputs, out, out_dir, grid, save_latent, n, opts,
                      batch_size, seed) -> None:  # fmt: skip
    """Point domains: translate .csv/.npy files (raw coordinates in, raw coordinates of the target out)."""
    if inputs:
        pairs = plan_point_outputs(list(inputs), f"to-{tgt.name}", out, out_dir)
        sources = [read_points(p) for p, _ in pairs]  # read (and validate) everything before writing anything
    else:
        dst = out or (out_dir or Path(".")) / f"{src.name}-to-{tgt.name}.csv"
        pairs = [(Path(f"{n} sampled {src.name} points"), Path(dst))]
        check_point_outputs(pairs)
        sources = [src.to_raw(sample_points(src.diffusion, n, seed, opts, batch_size=batch_size))]
        console.print(f"sampled {n} {src.name} sources (seed {seed})")
    results = []
    for (_, dst), raw in zip(pairs, sources, strict=True):
        result = translate_points(src, tgt, raw, opts, batch_size)
        write_points(dst, result.output_raw)
        results.append(result)
    total = sum(len(r.output) for r in results)
    seconds = sum(r.seconds for r in results)
    if grid is not None:
        figure = transport_figure(
            torch.cat([src.to_model(r) for r in sources]),
            torch.cat([r.latent for r in results]),
            torch.cat([r.output for r in results]),
            (
                f"source: {src.name} (model space)",
                f"latent ({src.name} encoder)",
                f"translated: {tgt.name} (model space)",
            ),
            f"{total} points, {opts.describe()}; colour = position in the source",
        )
        save_png(figure, grid)
        console.print(f"figure: {grid}")
    if save_latent is not None:
        meta = {"source": src.name, "solver": opts.describe(), "names": [str(p) for p, _ in pairs]}
        Latent(torch.cat([r.latent for r in results]), meta=meta).save(save_latent)
        console.print(f"latents: {save_latent}")
    where = pairs[0][1] if len(pairs) == 1 else pairs[0][1].parent
    console.print(
        f"translated {total} points {describe_bridge(src.name, src.location, tgt.name, tgt.location)} with "
        f"{opts.describe()}: {results[0].nfe_per_point:.0f} NFE per point, {seconds:.1f}s → {where} "
        f"(raw {tgt.name} coordinates)"
    )


@app.command("decode")
@shards
@solve_options
@kernel_options
def decode_command(
    latent: Path = typer.Argument(..., help="Latent .safetensors written by `ddib translate --save-latent`"),
    to: str = typer.Option(..., "--to", help="Domain whose model decodes"),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Grid PNG [default: <latent>-<domain>.png]; points: .csv/.npy [default: <latent>-<domain>.csv]",
    ),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Write one PNG per latent into this folder"),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Latents per ODE solve [default: fits the device ({AUTO_BATCH}); {DEFAULT_POINT_BATCH} points]",
    ),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    guidance: float = GuidanceOpt,
    kernels: Kernels | None = None,  # --channels-last --compile --cuda-graphs --bf16 --fp16 (kernel_options)
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Decode saved latents with a domain's model (ODE t 1→0)."""
    if out is not None and out_dir is not None:
        raise DDIBError("give either --out or --out-dir, not both")
    saved = Latent.load(latent)
    z, meta = saved.z, saved.meta or {}
    dev = resolve_device(device)
    speed = kernels.resolve(dev)
    target = load_domain_model(to, models_dir, dev, symmetry, guidance)
    model, loc, to = target.diffusion, target.location, target.name
    opts = ode.resolve_steps(opts, model)
    if tuple(z.shape[1:]) != tuple(model.data_shape):
        raise DDIBError(f"latents have shape {tuple(z.shape[1:])} but the {to} model expects {tuple(model.data_shape)}")
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    if target.is_points:  # point latents → points in the target's raw coordinates (.csv/.npy)
        if distributed.several_processes():
            raise DDIBError("point latents decode in one process (they are cheap): run without torchrun")
        pm = require_points(target)
        if out_dir is not None:
            raise DDIBError("point latents decode to one file: use --out FILE.csv|.npy")
        out = out or latent.with_name(f"{latent.stem}-{to}.csv")
        check_point_outputs([(latent, out)])
        write_points(out, pm.to_raw(decode_points(model, z, opts, stats, batch_size)))
        console.print(
            f"decoded {len(z)} point latent{'' if len(z) == 1 else 's'} (from {meta.get('source', '?')}) with {to} "
            f"({loc.where}), "
            f"{opts.describe()}, {time.perf_counter() - t0:.1f}s → {out} (raw {to} coordinates)"
        )
        return
    if saved.hue is not None and not model.hue_quotient:
        raise DDIBError(f"{latent} carries hues (from a hue-quotient encoder); decode it with a hue-quotient model")
    check_png(out)
    info, dev = distributed.setup(dev)  # under torchrun each process decodes its share of the latents
    model = model.to(dev)
    share = len(distributed.shard(list(range(len(z))), info))
    batch_size = batch_size or auto_batch_size([model], dev, max(share, 1))
    file_name = lambda i: f"{latent.stem}-{i:04d}-{to}.png"  # noqa: E731
    gathered, nfe = decode_shared(accelerate(model, speed), saved, opts, batch_size, stats, info, "decode",
                                  f"decode with {to}", out_dir, file_name)  # fmt: skip
    seconds = time.perf_counter() - t0
    distributed.teardown(info)
    if not info.is_main:
        return
    if out_dir is not None:
        where = f"{out_dir}/"
    else:
        out = out or latent.with_name(f"{latent.stem}-{to}.png")
        save_png(image_grid(torch.stack(gathered), nrow=8), out)
        where = str(out)
    procs = f" on {info.world_size} processes" if info.enabled else ""
    console.print(
        f"decoded {len(z)} latent{'' if len(z) == 1 else 's'} (from {meta.get('source', '?')}) with {to} "
        f"({loc.where}), "
        f"{ode.describe_solve(opts, model)}"
        f"{guided(model)}{describe_precision(speed)}{procs}: "
        f"{nfe:.0f} NFE per image{averaging(model)}, {seconds:.1f}s → {where}"
        + (" (the file carries no hues: hue 0)" if model.hue_quotient and saved.hue is None else "")
    )
