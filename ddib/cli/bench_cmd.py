"""`ddib bench train|translate|throughput|speed|identify|all`: measure and write results tables (Markdown + CSV)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch
import typer

from ..bench import translate as bench
from ..bridge import ode
from ..data import data_dir_or_default
from ..data.colored_mnist import DIGIT_DOMAINS
from ..data.inputs import held_out_digits, source_images
from ..errors import DDIBError
from ..io.atomic import atomic_write
from ..io.images import save_png
from ..likelihood.source_inference import BAND
from ..model.nets import UNET_SIZES
from ..model.registry import load_domain_model
from ..model.speed import accelerate, accelerate_for, check_speed, default_speed, parse_speed
from ..model.symmetry import describe_averaging
from ..utils import resolve_device
from .app import app, console
from .options import DataDirOpt, DeviceOpt, ModelsDirOpt, QualityOpt, SolverOpt, StepsOpt, SymmetryOpt

bench_app = typer.Typer(help="Benchmarks that print numbers and write results tables.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

OutDirOpt = typer.Option(Path("bench"), "--out-dir", help="Where to write the .md and .csv tables")


def write_tables(out_dir: Path, name: str, rows: list, header: str) -> None:
    md = f"{header}\n\n{bench.to_markdown(rows)}"
    atomic_write(out_dir / f"{name}.md", lambda f: f.write(md.encode()))
    atomic_write(out_dir / f"{name}.csv", lambda f: f.write(bench.to_csv(rows).encode()))
    console.print(md)
    console.print(f"tables: {out_dir / name}.md, {out_dir / name}.csv")


@bench_app.command("train")
def bench_train_command(
    sizes: str = typer.Option(",".join(UNET_SIZES), "--sizes", help="Comma-separated model sizes"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    iters: int = typer.Option(5, "--iters", min=1, help="Timed steps per size (after 2 warm-up steps)"),
    device: str = DeviceOpt,
    out_dir: Path = OutDirOpt,
) -> None:
    """Training throughput (images/s) of each UNet size on the current device."""
    names = [s.strip() for s in sizes.split(",") if s.strip()]
    unknown = [s for s in names if s not in UNET_SIZES]
    if unknown:
        raise DDIBError(f"unknown model size(s) {', '.join(unknown)}; choose from {', '.join(UNET_SIZES)}")
    dev = resolve_device(device)

    def show(r):
        console.print(f"{r.model_size}: {r.images_per_s:.1f} images/s ({r.parameters / 1e6:.2f}M parameters)")

    rows = bench.bench_train(names, batch_size, device=dev, iters=iters, on_row=show)
    threads = torch.get_num_threads()
    header = f"Training throughput, 32×32 RGB, batch {batch_size}, {_device_name(dev)}, {threads} threads"
    write_tables(out_dir, f"train-{dev.type}", rows, header)


@bench_app.command("translate")
def bench_translate_command(
    source: str = typer.Option("fives", "--from"),
    target: str = typer.Option("sevens", "--to"),
    n: int = typer.Option(16, "-n", "--num", min=1, help="Held-out test images in the fixed batch"),
    inputs: Optional[list[Path]] = typer.Option(None, "--inputs", help="Use these images instead of held-out digits"),
    quick: bool = typer.Option(False, "--quick", help="A few settings only, looser reference (smoke test)"),
    reference_spec: Optional[str] = typer.Option(
        None,
        "--reference",
        help="The converged solve rows are measured against: SOLVER:TOL (adaptive) or SOLVER:STEPS (fixed) "
        "[default: dopri5:1e-6; --quick: dopri5:1e-3]; it is also run at half its budget to report how converged it is",
    ),
    solvers: Optional[str] = typer.Option(
        None, "--solvers", help="Comma-separated solvers: only their rows (the first row is the speed baseline)"
    ),
    steps_list: Optional[str] = typer.Option(
        None, "--steps-list", help="With --solvers: these step counts (e.g. 6,8,10,12,16,20) instead of the table's"
    ),
    grids: str = typer.Option(
        "default", "--grids", help="default (fixed-shape grids), tuned (the models' tuned grids) or both"
    ),
    no_cycle: bool = typer.Option(False, "--no-cycle", help="Skip the translation back (about a third of the cost)"),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    data_dir: Optional[str] = DataDirOpt,
    out_dir: Path = OutDirOpt,
) -> None:
    """Solver × steps: NFE, images/s, round-trip error, distance to a converged dopri5 reference."""
    if grids not in ("default", "tuned", "both"):
        raise DDIBError(f"--grids {grids!r}: use default, tuned or both")
    if steps_list is not None and not solvers:
        raise DDIBError("--steps-list needs --solvers (the solvers to run at those step counts)")
    dev = resolve_device(device)
    src_dm = load_domain_model(source, models_dir, dev, symmetry)
    src = src_dm.diffusion
    tgt_dm = load_domain_model(target, models_dir, dev, symmetry)
    src, tgt = accelerate_for(src, dev), accelerate_for(tgt_dm.diffusion, dev)  # what `ddib translate` runs
    src_digits, tgt_digits = src_dm.digits or source, tgt_dm.digits or target  # `fives` for the model fives-rgb
    x = source_images(src_digits, src, n, files=inputs, data_dir=data_dir).x.to(dev)
    grid = [("ddim", 20), ("heun2", 5)] if quick else None
    adaptive = [("dopri5", 1e-3)] if quick else None
    if reference_spec:
        reference_options = bench.parse_reference(reference_spec)
    else:
        reference_options = ode.ODEOptions("dopri5", rtol=1e-3, atol=1e-3) if quick else bench.REFERENCE
    if solvers:
        chosen = [s.strip() for s in solvers.split(",") if s.strip()]
        if unknown := [s for s in chosen if s not in ode.SOLVERS]:
            raise DDIBError(f"unknown solver {unknown[0]!r} in --solvers; choose from {', '.join(ode.SOLVERS)}")
        grid = [row for row in (grid or bench.TRANSLATE_GRID) if row[0] in chosen]
        adaptive = [row for row in (adaptive or bench.ADAPTIVE_GRID) if row[0] in chosen]
        if steps_list is not None:
            counts = _int_list(steps_list, "--steps-list")
            grid = [(s, k) for s in chosen if s in ode.FIXED_SOLVERS for k in counts]
            adaptive = [] if not [s for s in chosen if s in ode.ADAPTIVE_SOLVERS] else adaptive
        if not grid and not adaptive:
            raise DDIBError(f"no benchmark rows for --solvers {solvers}")
    if grids != "default":  # each (solver, steps) row on the models' tuned grids: instead of, or after, its own
        rows = []
        for row in grid if grid is not None else bench.TRANSLATE_GRID:
            # A solver whose grid is its definition (DDIM's, uniform in t) has no tuned rows.
            tunable = len(row) == 2 and not ode.ODEOptions(row[0], row[1]).spec.uniform_t
            # With both, a tuned row only where a model has a tuned grid (otherwise it would repeat the row).
            has_grid = tunable and ode.uses_tuned_grid(ode.ODEOptions(row[0], row[1]), src, tgt)
            rows += ([row] if grids == "both" else []) + ([(*row, "tuned")] if has_grid or grids == "tuned" else [])
        grid = rows

    def show(r):
        console.print(
            f"{r.solver:>8} {r.steps:>9}: NFE {r.nfe_encode}+{r.nfe_decode}, {r.images_per_s:.2f} img/s, "
            f"round trip {r.round_trip_rms:.3f}, to reference {r.to_reference_rms:.3f} (median image "
            f"{r.to_reference_median_image:.3f}, {r.images_over_1_level:.0%} of images > 1; decode alone "
            f"{r.decode_only_to_reference_rms:.3f}){'' if r.cycle_rms is None else f', cycle {r.cycle_rms:.3f}'} "
            f"(RMS, 8-bit levels); latent {r.latent_to_reference_rms:.4f} RMS"
        )

    console.print(f"reference: {reference_options.describe()} translation of {len(x)} {source} → {target}")
    try:
        reference = bench.reference_solve(src, tgt, x, reference_options, check=True)
    except DDIBError as err:
        raise DDIBError(f"reference solve: {err} (--reference unipc:200 is a fixed-step alternative)") from None
    console.print(f"reference: {reference.describe()}")
    score, fd_note = scorer(src_digits, tgt_digits, len(x), dev, data_dir)
    rows = bench.bench_solvers(src, tgt, x, grid, adaptive, reference, on_row=show, score=score, cycle=not no_cycle)
    header = (
        f"DDIB {source} → {target}, {len(x)} {'held-out test ' if not inputs else ''}images, {_device_name(dev)}, "
        f"{torch.get_num_threads()} threads, kernels {default_speed(dev).describe()}. "
        f"Errors are RMS / max over pixels in 8-bit levels (1.0 = 1/255 of the range). "
        f"Reference: {reference.describe()}; latent_to_reference_rms is in latent units (z ≈ N(0, I)), "
        f"to_reference_median_image: the median of each image's RMS; images_over_1_level: the share of images whose "
        f"RMS exceeds 1 level; to_reference_rms_but_worst: the RMS over every image but the farthest one. "
        f"decode_only: the reference latent decoded with the row's solver. "
        f"{'' if no_cycle else f'Cycle: translated back {target} → {source} with the same solver. '}"
        f"Accuracy, source share and hue as in `ddib evaluate`. {fd_note}"
    )
    write_tables(out_dir, f"translate-{dev.type}", rows, header)
    chart = bench.solver_chart(rows, f"DDIB {source} -> {target}: distance to converged solve vs cost ({dev.type})")
    save_png(chart, out_dir / f"translate-{dev.type}.png")
    console.print(f"plot: {out_dir / f'translate-{dev.type}.png'}")


@bench_app.command("throughput")
def bench_throughput_command(
    source: str = typer.Option("fives", "--from"),
    target: str = typer.Option("sevens", "--to"),
    batch_sizes: str = typer.Option("1,16,256", "--batch-sizes", help="Comma-separated batch sizes"),
    solver: str = SolverOpt,
    steps: Optional[int] = StepsOpt,
    quality: str = QualityOpt,
    repeats: int = typer.Option(1, "--repeats", min=1),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    kernels: str = typer.Option(
        "",
        "--kernels",
        help="Kernel setting as `bench speed` names it, e.g. eager or cuda_graphs [default: the "
        "device's, what `ddib translate` runs]",
    ),
    pairs: Optional[list[str]] = typer.Option(
        None, "--pair", help="FROM,TO: measure this bridge instead of --from/--to (repeat it for several)"
    ),
    presets: bool = typer.Option(
        False, "--presets", help="Each pair at every quality preset its models store, not at the one solve"
    ),
    baseline: Optional[str] = typer.Option(
        None,
        "--baseline",
        help="SOLVER:STEPS (e.g. unipc:20) measured first, on its solver's own grid; each row's images/s is "
        "divided by the baseline's at the same batch size",
    ),
    baseline_pair: Optional[str] = typer.Option(
        None, "--baseline-pair", help="FROM,TO of the baseline [default: the first pair]"
    ),
    baseline_symmetry: Optional[str] = typer.Option(
        None, "--baseline-symmetry", help="The baseline's test-time averaging [default: --symmetry]"
    ),
    out_dir: Path = OutDirOpt,
) -> None:
    """Translation images/s for several batch sizes: at one solve, or (--presets, --pair, --baseline) at each
    preset of each pair, against a baseline solve."""
    sizes = _int_list(batch_sizes, "--batch-sizes")
    dev = resolve_device(device)
    speed = parse_speed(kernels) if kernels.strip() else default_speed(dev)
    check_speed(speed, dev)
    if pairs or presets or baseline:
        chosen = ode.ODEOptions(solver=solver, steps=steps, quality=quality)
        bridges = [_pair(p) for p in pairs] if pairs else [(source, target)]
        base = None
        if baseline:
            options = dataclasses.replace(bench.parse_reference(baseline), tuned=False)
            base = (_pair(baseline_pair) if baseline_pair else bridges[0], baseline_symmetry or symmetry, options)
        _compare_throughput(bridges, chosen, presets, base, sizes, repeats, dev, speed, models_dir, symmetry,
                            out_dir)  # fmt: skip
        return
    src = load_domain_model(source, models_dir, dev, symmetry).diffusion
    tgt = load_domain_model(target, models_dir, dev, symmetry).diffusion
    opts = ode.resolve_steps(ode.ODEOptions(solver=solver, steps=steps, quality=quality), src, tgt)
    passes = describe_averaging(src.config.symmetry, tgt.config.symmetry) or " (1 network pass per NFE)"
    src, tgt = accelerate(src, speed), accelerate(tgt, speed)
    x = ode.sample(src, min(16, max(sizes)), torch.Generator().manual_seed(0), ode.ODEOptions(), device=dev)

    def show(r):
        console.print(f"batch {r.batch_size}: {r.images_per_s:.2f} images/s ({r.nfe_per_image} NFE per image)")

    rows = bench.bench_throughput(src, tgt, x, opts, sizes, repeats, show, speed.compile or speed.cuda_graphs)
    threads = torch.get_num_threads()
    header = (
        f"DDIB {source} → {target} throughput, {ode.describe_solve(opts, src, tgt)}{passes}, {_device_name(dev)}, "
        f"{threads} threads, "
        f"kernels {speed.describe()}. Peak memory: CUDA allocations, or on CPU the process's peak "
        "resident set."
    )
    write_tables(out_dir, f"throughput-{dev.type}", rows, header)


def _pair(text: str) -> tuple[str, str]:
    """FROM,TO of --pair and --baseline-pair."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise DDIBError(f"--pair {text!r}: give FROM,TO, e.g. fives,sevens")
    return parts[0], parts[1]


def _compare_throughput(bridges, chosen: ode.ODEOptions, presets: bool, base, sizes: list[int], repeats: int, dev,
                        speed, models_dir, symmetry: str, out_dir: Path) -> None:  # fmt: skip
    """One row per (pair, solve, batch size), the baseline's first; each row's images/s over the baseline's."""
    runs = []  # (pair label, models, options, label of the solve)
    if base is not None:
        (b_from, b_to), b_symmetry, b_options = base
        models = [load_domain_model(m, models_dir, dev, b_symmetry).diffusion for m in (b_from, b_to)]
        runs.append((f"{b_from} → {b_to}", models, b_options, f"baseline: {ode.describe_solve(b_options, *models)}"))
    for a, b in bridges:
        models = [load_domain_model(m, models_dir, dev, symmetry).diffusion for m in (a, b)]
        solves = bench.preset_solves(chosen.solver, *models) if presets else [(chosen, None)]
        for options, names in solves:
            text = ode.describe_solve(options, *models, name_preset=names is None)
            runs.append((f"{a} → {b}", models, options, text + ("" if names is None else f" ({names})")))
    rows, reference = [], {}
    for pair, (src, tgt), options, solve in runs:
        options = ode.resolve_steps(options, src, tgt)
        averaged = describe_averaging(src.config.symmetry, tgt.config.symmetry) or " (1 network pass per NFE)"
        fast = [accelerate(m, speed) for m in (src, tgt)]
        x = ode.sample(fast[0], min(16, max(sizes)), torch.Generator().manual_seed(0), ode.ODEOptions(), device=dev)
        console.print(f"{pair}, {solve}{averaged}:")
        measured = bench.bench_throughput(*fast, x, options, sizes, repeats, None, speed.compile or speed.cuda_graphs)
        for r in measured:
            reference.setdefault(r.batch_size, r.images_per_s)  # the first run is the baseline (or the first pair)
            ratio = r.images_per_s / reference[r.batch_size] if base is not None else None
            row = bench.ComparedThroughputRow(pair, solve, averaged.strip(" ()"), r.batch_size, r.nfe_per_image,
                                              r.images_per_s, ratio, r.device)  # fmt: skip
            rows.append(row)
            versus = "" if ratio is None else f", ×{ratio:.2f} the baseline's"
            console.print(f"  batch {r.batch_size}: {r.images_per_s:.2f} images/s ({r.nfe_per_image} NFE){versus}")
    header = (
        f"DDIB translation throughput, {_device_name(dev)}, {torch.get_num_threads()} threads, kernels "
        f"{speed.describe()}; images sampled from each source model. vs_baseline: images/s over the first row's "
        "at the same batch size, measured in the same run."
    )
    write_tables(out_dir, f"throughput-{dev.type}", rows, header)


@bench_app.command("speed")
def bench_speed_command(
    source: str = typer.Option("fives", "--from"),
    target: str = typer.Option("sevens", "--to"),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per translation batch"),
    threads: str = typer.Option("", "--threads", help="Comma-separated CPU thread counts [default: 1 and all]"),
    train_size: str = typer.Option("small", "--train-size", help="UNet size of the training rows ('' to skip)"),
    settings: str = typer.Option(
        "eager,channels_last,compile,channels_last+compile,bf16,fp16", "--settings", help="Comma-separated settings"
    ),
    solver: str = SolverOpt,
    steps: Optional[int] = StepsOpt,
    quality: str = QualityOpt,
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    out_dir: Path = OutDirOpt,
) -> None:
    """Images/s of translation and training per kernel setting (channels_last, compile, bf16, fp16, ...) and thread
    count."""
    from ..bench import speed as bench_speed

    dev = resolve_device(device)
    counts = _int_list(threads, "--threads") if threads else sorted({1, torch.get_num_threads()})
    src = load_domain_model(source, models_dir, dev, symmetry).diffusion
    tgt = load_domain_model(target, models_dir, dev, symmetry).diffusion
    opts = ode.resolve_steps(ode.ODEOptions(solver=solver, steps=steps, quality=quality), src, tgt)
    x = ode.sample(src, batch_size, torch.Generator().manual_seed(0), opts, device=dev)

    def show(r):
        diff = f", {r.diff_rms:.3f} RMS / {r.diff_max:.2f} max levels from fp32 eager" if r.diff_rms is not None else ""
        if r.note:
            console.print(f"{r.task:>9} {r.setting:>22} {r.threads} thr: {r.note}")
            return
        console.print(
            f"{r.task:>9} {r.setting:>22} {r.threads} thr: {r.images_per_s:8.2f} img/s ×{r.speedup:.2f} "
            f"(first call {r.first_call_s:.1f}s){diff}"
        )

    chosen = [parse_speed(s) for s in settings.split(",") if s.strip()]
    if train_size and train_size not in UNET_SIZES:
        raise DDIBError(f"unknown model size {train_size}; choose from {', '.join(UNET_SIZES)}")
    rows = bench_speed.bench_translate_speed(src, tgt, x, opts, chosen, threads=counts, on_row=show)
    if train_size:
        # the training rows keep the settings that apply to training (`bench_train_speed`)
        rows += bench_speed.bench_train_speed(train_size, 64, src.data_shape[-1], dev, chosen, counts, on_row=show)
    header = (
        f"Speed settings on {_device_name(dev)}: translation {source} → {target} ({opts.describe()}, batch "
        f"{batch_size}){f' and training ({train_size} UNet, batch 64)' if train_size else ''}. Speedup is "
        "against fp32 eager at the "
        "same thread count; diff is the translation's distance to fp32 eager (8-bit levels, RMS / max); "
        "first call includes compilation."
    )
    write_tables(out_dir, f"speed-{dev.type}", rows, header)


@bench_app.command("identify")
def bench_identify_command(
    domains: str = typer.Option("fives,sevens", "--domains", help="Comma-separated digit domains to tell apart"),
    n: int = typer.Option(50, "-n", "--num", min=1, help="Held-out test images per domain"),
    settings: str = typer.Option(
        "band:4,band:16,elbo:4,elbo:16,elbo:64,ode:1",
        "--settings",
        help="method:levels (band, elbo) or method:probes (ode), comma-separated; band:LEVELS:LO:HI sets the "
        "log-SNR band",
    ),
    tol: float = typer.Option(1e-3, "--tol", help="dopri5 rtol = atol of the ODE likelihood"),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    data_dir: Optional[str] = DataDirOpt,
    out_dir: Path = OutDirOpt,
) -> None:
    """Source-domain inference: accuracy on held-out digits, bits/dim, NFE and time per estimator setting."""
    from ..bench import identify as bench_identify
    from ..data.colored_mnist import colored_mnist

    names = [d.strip() for d in domains.split(",") if d.strip()]
    if len(names) < 2 or any(d not in DIGIT_DOMAINS for d in names):
        raise DDIBError(f"--domains needs two or more digit domains ({', '.join(DIGIT_DOMAINS)})")
    parsed = []
    for item in settings.split(","):
        parsed.append(bench_identify.parse_setting(item.strip(), tol))
    dev = resolve_device(device)
    models = {d: load_domain_model(d, models_dir, dev, symmetry).diffusion for d in names}
    images = {}
    for d in names:
        u8, _ = colored_mnist(data_dir_or_default(data_dir), DIGIT_DOMAINS.index(d), "test")
        images[d] = u8[torch.randperm(len(u8), generator=torch.Generator().manual_seed(0))[:n]]

    def show(r):
        console.print(
            f"{r.method} ({r.setting}): {r.accuracy:.1%} right, {r.undecided:.1%} undecided, "
            f"{r.nfe_per_image_per_model:.0f} NFE per image per model, {r.seconds_per_image:.2f} s/image; "
            f"{r.bits_per_dim}"
        )

    rows, details = bench_identify.bench_identify(models, images, parsed, batch_size, dev, on_row=show)
    header = (
        f"Source-domain identification among {', '.join(names)}: {n} held-out MNIST test images per domain "
        f"(coloured, seed 0), ranked by bits/dim under each model; {_device_name(dev)}, "
        f"{torch.get_num_threads()} threads. ODE: dopri5 at tol {tol:g}, each NFE carries one vector-Jacobian "
        "product per probe. band: the ELBO's integrand over a log-SNR band only (default "
        f"[{BAND[0]:g}, {BAND[1]:g}]; its bits/dim are of that part, not a likelihood). Undecided: margin "
        "within 2 paired standard errors (still counted by its best guess). bits_per_dim: each domain's own "
        "images under its own model."
    )
    write_tables(out_dir, f"identify-{dev.type}", rows, header)
    parts = [f"{header}\n"]
    for d in details:
        parts.append(f"### {d.setting}: images of each domain (rows) ranked first under each model (columns)\n")
        parts.append(bench_identify.matrix_markdown(d.confusion, "images ↓ model →", "d"))
        parts.append(f"### {d.setting}: mean bits/dim of each domain's images (rows) under each model (columns)\n")
        parts.append(bench_identify.matrix_markdown(d.bits_per_dim, "images ↓ model →", ".3f"))
    text = "\n".join(parts)
    atomic_write(out_dir / f"identify-matrices-{dev.type}.md", lambda f: f.write(text.encode()))
    console.print(f"confusion and bits/dim matrices: {out_dir / f'identify-matrices-{dev.type}.md'}")


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DDIBError(f"{option} must be integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise DDIBError(f"{option} must be positive integers")
    return values


def scorer(source: str, target: str, n: int, device, data_dir: str | None):
    """(score(sources, outputs, cycled) → the `ddib evaluate` metrics that apply, a line saying what FD is against).

    FD is biased upward at small n, so the line gives the floor: the same statistic between n real targets and the
    other real targets, which a perfect translation would reach at this n.
    """
    from ..evaluation.classifier import extract_features, load_classifier
    from ..evaluation.evaluate import score_translations
    from ..evaluation.metrics import frechet_distance

    classifier = load_classifier(device=device) if target in DIGIT_DOMAINS or source in DIGIT_DOMAINS else None
    if classifier is None:
        note = f"{source} and {target} are not digit domains: no classifier, so no accuracy and no FD."
    else:
        note = "No FD: the target is not a digit domain, or its test digits are not in the data dir."
    real_feats = None
    if classifier is not None and target in DIGIT_DOMAINS:
        try:
            real_feats = extract_features(classifier, held_out_digits(data_dir_or_default(data_dir), target, 10_000))
        except DDIBError:
            pass
    if real_feats is not None:
        note = f"FD is to all {len(real_feats)} real {target} test digits."
        if 2 <= n <= len(real_feats) // 2:
            note += f" {n} real {target} score {frechet_distance(real_feats[:n], real_feats[n:]):.1f} (the floor)."

    def score(sources, outputs, cycled):
        return score_translations(sources, outputs, cycled, source, target, classifier, real_feats)

    return score, note


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return dev.type


@bench_app.command("all")
def bench_all_command(
    source: str = typer.Option("fives", "--from"),
    target: str = typer.Option("sevens", "--to"),
    n: int = typer.Option(16, "-n", "--num", min=1, help="Held-out test images for the solver table"),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    data_dir: Optional[str] = DataDirOpt,
    out_dir: Path = OutDirOpt,
    symmetry: str = SymmetryOpt,
) -> None:
    """Everything: training throughput, the solver table + plot, translation throughput at batch 1/16/256."""
    bench_train_command(sizes=",".join(UNET_SIZES), batch_size=64, iters=5, device=device, out_dir=out_dir)
    bench_translate_command(source=source, target=target, n=n, inputs=None, quick=False, reference_spec=None,
                            solvers=None, steps_list=None, grids="default", no_cycle=False, device=device,
                            models_dir=models_dir, symmetry=symmetry, data_dir=data_dir, out_dir=out_dir)  # fmt: skip
    bench_throughput_command(source=source, target=target, batch_sizes="1,16,256", solver=ode.DEFAULT_SOLVER,
                             steps=ode.DEFAULT_STEPS, quality="default", repeats=1, device=device,
                             models_dir=models_dir, symmetry=symmetry, kernels="", pairs=None, presets=False,
                             baseline=None, baseline_pair=None, baseline_symmetry=None, out_dir=out_dir)  # fmt: skip
