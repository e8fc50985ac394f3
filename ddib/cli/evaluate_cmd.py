"""`ddib evaluate`: does the translation land in the target domain, and what did it keep from the source?"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..bridge import ode
from ..bridge.batching import AUTO_BATCH, auto_batch_size
from ..data import data_dir_or_default
from ..data.inputs import held_out_digits, source_images
from ..errors import DDIBError
from ..evaluation.classifier import load_classifier
from ..evaluation.evaluate import EvalReport, evaluate_pair
from ..io.atomic import atomic_write
from ..io.images import image_grid, interleave, save_png
from ..io.outputs import check_png
from ..model.registry import load_domain_model
from ..model.speed import accelerate, describe_precision
from ..train import distributed
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
    shards,
    solve_options,
)
from .progress import bar


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def report_table(r: EvalReport) -> Table:
    models = f" ({r.source_model} → {r.target_model})" if r.source_model else ""
    title = f"{r.source} → {r.target}{models}: {r.n} held-out images, {r.solver}, {r.device}"
    t = Table("metric", "value", title=title)
    rows = [
        ("read as target digit", _pct(r.target_accuracy)),
        ("still read as source digit", _pct(r.source_share)),
        ("hue error median / p90 (°)", f"{r.hue_error_median:.1f} / {r.hue_error_p90:.1f}"),
        ("cycle RMSE (pixels in [-1, 1])", _num(r.cycle_rmse, ".4f")),
        ("cycle read as source digit", _pct(r.cycle_source_accuracy)),
        ("Fréchet distance to real targets", _num(r.frechet_distance, ".2f")),
        ("NFE per image (one direction pair)", f"{r.nfe_per_image:.0f}"),
        ("images/s (translation)", f"{r.images_per_s:.2f}"),
        ("classifier test accuracy", _pct(r.classifier_test_accuracy)),
    ]
    for row in rows:
        t.add_row(*row)
    return t


@app.command("evaluate")
@shards
@solve_options
@kernel_options
def evaluate_command(
    source: str = typer.Option("fives", "--from", help="Source digit domain, or a model directory (runs/a/fives)"),
    target: str = typer.Option(
        "sevens",
        "--to",
        help="Target digit domain, or a model directory: another model of the source domain measures the "
        "same-domain floor (e.g. --from runs/a/fives --to runs/b/fives)",
    ),
    n: int = typer.Option(1000, "-n", "--num", min=2, help="Held-out source images (MNIST test split)"),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out subset"),
    inputs: Optional[list[Path]] = typer.Option(None, "--inputs", help="Source images (any domain) instead of MNIST"),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", min=1, help=f"Images per ODE solve [default: fits the device ({AUTO_BATCH})]"
    ),
    no_cycle: bool = typer.Option(False, "--no-cycle", help="Skip the translation back (halves the cost)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="Write a grid of the first 32 sources and outputs"),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    data_dir: Optional[str] = DataDirOpt,
    skip_bad: bool = SkipBadOpt,
    resize: str = ResizeOpt,
    guidance: float = GuidanceOpt,
    kernels: Kernels | None = None,  # --channels-last --compile --cuda-graphs --bf16 --fp16 (kernel_options)
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Score a translation on held-out digits: target accuracy, hue kept, cycle consistency, FD, speed."""
    check_png(grid, "--grid")
    if source == target:
        raise DDIBError("--from and --to must differ (two models of one domain: name their directories)")
    dev = resolve_device(device)
    speed = kernels.resolve(dev)
    info, dev = distributed.setup(dev)  # under torchrun each process translates its share of the sources
    src, tgt = (
        load_domain_model(source, models_dir, dev, symmetry),
        load_domain_model(target, models_dir, dev, symmetry),
    )
    (src_model, src_loc), (tgt_model, tgt_loc) = (
        (src.diffusion, src.location),
        (tgt.diffusion, tgt.location),
    )
    if (src_loc.path.resolve(), src_loc.label) == (tgt_loc.path.resolve(), tgt_loc.label):
        raise DDIBError(f"--from and --to are the same model ({src_loc.path})")
    source, target = src_loc.domain, tgt_loc.domain  # the domains, also when the models were named by path
    opts = ode.resolve_steps(opts, src_model, tgt_model)
    if guidance and tgt_loc.label is None:
        raise DDIBError(f"--guidance needs a label of a conditional model as --to; {target} is not one")
    src_model, tgt_model = accelerate(src_model, speed), accelerate(tgt_model, speed)
    data_dir = data_dir_or_default(data_dir)
    src_digits, tgt_digits = src.digits, tgt.digits  # `fives` for the model fives-rgb
    chosen = source_images(src_digits or source, src_model, n, files=inputs, seed=seed, data_dir=data_dir,
                           skip_bad=skip_bad, resize=resize)  # fmt: skip
    sources = chosen.x
    batch_size = batch_size or auto_batch_size([src_model, tgt_model], dev, len(sources))
    digits = tgt_digits is not None
    classifier = load_classifier(device=dev) if digits or src_digits is not None else None
    reals = held_out_digits(data_dir, tgt_digits, 10_000, seed) if digits else None
    if not digits and info.is_main:
        console.print(f"{target} is not a digit domain: no classifier reads it, so no target accuracy and no FD")
    total = len(sources) * (1 if no_cycle else 2)
    with bar("evaluate") as progress:
        task = progress.add_task(f"{source} → {target}", total=total, visible=info.is_main)
        evaluated = evaluate_pair(
            source,
            target,
            src_model,
            tgt_model,
            sources,
            opts,
            classifier,
            reals,
            batch_size,
            dev,
            cycle=not no_cycle,
            on_batch=lambda k: progress.advance(task, k * info.world_size),
            guidance=guidance,
            digits=(src_digits, tgt_digits),
            info=info,
        )
    distributed.teardown(info)
    if evaluated is None:  # not rank 0: it reports for all
        return
    report, outputs = evaluated
    report = dataclasses.replace(report, source_model=src_loc.where, target_model=tgt_loc.where,
                                 solver=report.solver + describe_precision(speed))  # fmt: skip
    console.print(report_table(report))
    if json_out is not None:
        text = json.dumps(report.to_dict(), indent=2) + "\n"
        atomic_write(json_out, lambda f: f.write(text.encode()))
        console.print(f"report: {json_out}")
    if grid is not None:
        save_png(image_grid(interleave(sources[:32], outputs[:32]), nrow=8), grid)
        console.print(f"grid: {grid}")
    if chosen.files is not None:
        report_skipped(chosen.files)
