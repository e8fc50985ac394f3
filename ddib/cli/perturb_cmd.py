"""`ddib perturb`: edit the latent between encode and decode and see what the target model makes of it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..bridge import ode
from ..bridge.batching import AUTO_BATCH, MAX_BATCH, auto_batch_size
from ..data import data_dir_or_default
from ..data.inputs import source_images
from ..errors import DDIBError
from ..evaluation.classifier import load_classifier
from ..evaluation.evaluate import digit_of
from ..io.outputs import check_png
from ..model.registry import describe_bridge, load_domain_model
from ..model.speed import accelerate, describe_precision
from ..perturb.latent_ops import BASES, OPS, OTHERS
from ..perturb.report import write_experiment, write_preset
from ..perturb.runner import (
    PRESETS,
    ExperimentResult,
    PerturbRunner,
    RowResult,
    experiment_from_ops,
    noise_seed,
    preset,
)
from ..utils import resolve_device
from .app import app, console
from .options import (
    DataDirOpt,
    DeviceOpt,
    GuidanceOpt,
    Kernels,
    ModelsDirOpt,
    ResizeOpt,
    SkipBadOpt,
    SymmetryOpt,
    kernel_options,
    report_skipped,
    solve_options,
)
from .progress import bar


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def numbers_table(rows: list[RowResult], title: str, target: str, with_experiment: bool = False) -> Table:
    cols = ["row", "latent mean", "latent std", "KS vs N(0,1)", "skew", "ex. kurt", "nbr corr"]
    cols += [f"read as {target}", "hue err median"]
    t = Table(*((["exp"] if with_experiment else []) + cols), title=title)
    for r in rows:
        cells = [
            r.label,
            f"{r.latent_mean:+.3f}",
            f"{r.latent_std:.3f}",
            f"{r.ks:.3f}",
            f"{r.skew:+.2f}",
            f"{r.excess_kurtosis:+.2f}",
            f"{r.neighbour_corr:+.3f}",
            _pct(r.target_share),
            "n/a" if r.hue_error_median is None else f"{r.hue_error_median:.1f}°",
        ]
        t.add_row(*(([r.experiment] if with_experiment else []) + cells))
    return t


@app.command("perturb")
@solve_options
@kernel_options
def perturb_command(
    inputs: Optional[list[Path]] = typer.Argument(
        None, help="Image files and/or folders [default: -n held-out source digits, or samples]"
    ),
    source: str = typer.Option("fives", "--from", help="Source domain (encodes)"),
    target: str = typer.Option("sevens", "--to", help="Target domain (decodes)"),
    n: int = typer.Option(8, "-n", "--num", min=1, help="Inputs to use when no files are given"),
    ops: Optional[list[str]] = typer.Option(
        None,
        "--op",
        help=f"Op to apply, repeatable, in order: {', '.join(OPS)}; OP=VALUE fixes its coefficient",
    ),
    preset_name: Optional[str] = typer.Option(
        None, "--preset", help=f"Run a set of experiments instead of --op: {', '.join(PRESETS)}"
    ),
    base: Optional[str] = typer.Option(
        None, "--base", help=f"Latent the ops start from: {' | '.join(BASES)} [default: source]"
    ),
    with_: Optional[str] = typer.Option(
        None, "--with", help=f"What checkerboard mixes in: {' | '.join(OTHERS)} [default: image]"
    ),
    coef: Optional[str] = typer.Option(
        None, "--coef", help="Coefficient(s), comma list to sweep, e.g. 0.01,0.1,0.3 [default: the op's sweep]"
    ),
    cell: int = typer.Option(1, "--cell", help="Checkerboard cell size in pixels"),
    scale: float = typer.Option(1.0, "--scale", help="Scale s of the normalized base"),
    seed: int = typer.Option(0, "--seed", help="Seed of the inputs (held-out subset or samples) and fixed noise"),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, help=f"Latents per ODE solve [default: fits the device ({AUTO_BATCH})]"
    ),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    data_dir: Optional[str] = DataDirOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Figure PNG [default: perturb-<ops>.png]"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out-dir", help="With --preset: folder for the figures and summary [default: perturb-<preset>/]"
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers as JSON"),
    skip_bad: bool = SkipBadOpt,
    resize: str = ResizeOpt,
    guidance: float = GuidanceOpt,
    kernels: Kernels | None = None,  # --channels-last --compile --cuda-graphs --bf16 --fp16 (kernel_options)
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Perturb DDIB latents (normalize, noise, blend, checkerboard, 2x2 rotation, blur) and decode them."""
    settings = {"cell": cell, "scale": scale, "seed": noise_seed(seed)}
    if preset_name is not None:
        given = [name for name, v in (("--op", ops), ("--coef", coef), ("--base", base), ("--with", with_),
                                      ("--out", out), ("--json", json_out)) if v]  # fmt: skip
        if given:
            raise DDIBError(f"--preset defines its own experiments and writes into --out-dir; drop {', '.join(given)}")
        specs = [s.with_settings(**settings) for s in preset(preset_name)]
        out_dir = out_dir or Path(f"perturb-{preset_name}")
    else:
        if out_dir is not None:
            raise DDIBError("--out-dir goes with --preset; for one experiment use --out")
        if not ops:
            raise DDIBError(f"name an op with --op ({', '.join(OPS)}) or a set of experiments with --preset")
        spec = experiment_from_ops(ops, coef, base or "source", with_ or "image", settings)
        specs = [spec]
        out = out or Path(f"perturb-{spec.name}.png")
        check_png(out)

    dev = resolve_device(device)
    speed = kernels.resolve(dev)
    src, tgt = (
        load_domain_model(source, models_dir, dev, symmetry),
        load_domain_model(target, models_dir, dev, symmetry, guidance),
    )
    (src_model, src_loc), (tgt_model, tgt_loc) = (src.diffusion, src.location), (tgt.diffusion, tgt.location)
    src_model, tgt_model = ode.bridge_ends(src_model, tgt_model)
    opts = ode.resolve_steps(opts, src_model, tgt_model)
    source, target = src_loc.domain, tgt_loc.domain
    guided = f", guidance w = {guidance:g}" if guidance else ""
    solve = ode.describe_solve(opts, src_model, tgt_model) + describe_precision(speed)
    console.print(f"models: {describe_bridge(source, src_loc, target, tgt_loc)}; {solve}{guided}")
    data_dir = data_dir_or_default(data_dir)
    chosen = source_images(src.digits or source, src_model, None if inputs else n, files=inputs, seed=seed,
                           data_dir=data_dir, samples=True, sample_options=opts, skip_bad=skip_bad,
                           resize=resize)  # fmt: skip
    x, inputs_text, images = chosen.x, chosen.about, chosen.files
    console.print(f"inputs: {inputs_text}")

    classifier, target_digit = None, digit_of(tgt.digits)  # 7 for the model sevens-rgb
    if target_digit is not None:
        classifier = load_classifier(device=dev)
        if classifier.config.image_size != tgt_model.data_shape[-1] or tgt_model.data_shape[0] not in (1, 3):
            classifier, target_digit = None, None

    src_fast, tgt_fast = accelerate(src_model, speed), accelerate(tgt_model, speed)
    # not capped by the inputs: each experiment decodes the latents of all its coefficients together
    batch_size = batch_size or auto_batch_size([src_model, tgt_model], dev, MAX_BATCH)
    runner = PerturbRunner(src_fast, tgt_fast, x, opts, classifier, target_digit, dev, batch_size)
    t0 = time.perf_counter()
    results: list[ExperimentResult] = []
    with bar("perturb") as progress:
        task = progress.add_task(f"{source} → {target}", total=runner.work(specs))
        runner.on_images = lambda k: progress.advance(task, k)
        for spec in specs:
            results.append(runner.run(spec))
    seconds = time.perf_counter() - t0
    ref_images, ref_row = runner.reference
    latent = runner.latent.z
    input_label = f"inputs\n({source})"

    about = {"source": source, "target": target, "inputs": inputs_text, "n": len(x),
             "solver": opts.describe() + describe_precision(speed), "device": str(dev)}  # fmt: skip
    if preset_name is not None:
        write_preset(out_dir, preset_name, results, x, latent, ref_images, input_label, about)
        rows = [ref_row] + [row for r in results for row in r.rows]
        console.print(numbers_table(rows, f"{source} → {target}: preset {preset_name}", target, True))
        where = f"{len(results)} figures + summary.md/.csv/.json in {out_dir}/"
    else:
        (result,) = results
        write_experiment(out, json_out, result, x, latent, ref_images, input_label, about)
        title = f"{source} → {target}: {result.spec.plan.describe()}"
        console.print(numbers_table([ref_row, *result.rows], title, target))
        if json_out is not None:
            console.print(f"numbers: {json_out}")
        where = str(out)
    enc, dec = runner.encode_stats, runner.decode_stats
    decoded = len(x) * (1 + sum(len(r.rows) for r in results))
    extra = len(x) * sum(len(r.rows) for r in results if r.spec.plan.acts_on_image)
    again = f", encoded {extra} perturbed inputs for image-space ops" if extra else ""
    console.print(
        f"encoded {len(x)} inputs once ({enc.per_solve[0]} NFE per image){again}, decoded {decoded} latents "
        f"({dec.per_solve[0]} NFE per image), {seconds:.1f}s → {where}"
    )
    if images is not None:
        report_skipped(images)
