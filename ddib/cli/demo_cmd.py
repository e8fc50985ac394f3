"""`ddib demo`: the main job on the bundled models, no dataset needed: sample fives, translate them to sevens."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
import typer

from ..bridge import ode
from ..evaluation.metrics import hue_errors, quantile
from ..io.images import labelled_grid, save_png
from ..io.outputs import check_png
from ..model.registry import load_domain_model
from ..model.speed import accelerate_for
from ..model.symmetry import describe_averaging
from ..utils import resolve_device
from .app import app, console
from .options import DeviceOpt, ModelsDirOpt, QualityOpt, SolverOpt, StepsOpt
from .translate_cmd import hue_carried


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo.png"), "--out", help="Figure to write (rows: source → target)"),
    n: int = typer.Option(8, "-n", "--num", min=1, max=64, help="How many sources to sample"),
    source: str = typer.Option("fives", "--from", help="Source domain"),
    target: str = typer.Option("sevens", "--to", help="Target domain"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled sources"),
    solver: str = SolverOpt,
    steps: Optional[int] = StepsOpt,
    quality: str = QualityOpt,
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
) -> None:
    """Sample sources from the source model, translate them with DDIB, write the figure and a summary."""
    check_png(out)
    opts = ode.ODEOptions(solver=solver, steps=steps, quality=quality)
    dev = resolve_device(device)
    src, tgt = load_domain_model(source, models_dir, dev), load_domain_model(target, models_dir, dev)
    (src_model, src_loc), (tgt_model, tgt_loc) = (src.diffusion, src.location), (tgt.diffusion, tgt.location)
    opts = ode.resolve_steps(opts, src_model, tgt_model)
    src_model, tgt_model = accelerate_for(src_model, dev), accelerate_for(tgt_model, dev)
    source, target = src.name, tgt.name  # the domains' names, also for models given as directories
    console.print(f"models: {source} ({src_loc.where}, {src_loc.path}), {target} ({tgt_loc.where}, {tgt_loc.path})")
    gen = torch.Generator().manual_seed(seed)
    sample_stats, stats = ode.SolveStats(), ode.SolveStats()
    t0 = time.perf_counter()
    x = ode.sample(src_model, n, gen, opts, sample_stats, device=dev)
    t1 = time.perf_counter()
    y = ode.translate(src_model, tgt_model, x, opts, stats)
    t2 = time.perf_counter()
    save_png(labelled_grid([(source, x.cpu()), (target, y.cpu())]), out)
    console.print(f"sampled {n} {source}: {sample_stats.nfe} NFE per image, {t1 - t0:.1f}s")
    console.print(
        f"translated {n} {source} → {target} with {ode.describe_solve(opts, src_model, tgt_model)}: "
        f"{stats.nfe} NFE per image "
        f"({stats.per_solve[0]} encode + {stats.per_solve[1]} decode)"
        f"{describe_averaging(src_model.config.symmetry, tgt_model.config.symmetry)}"
        f"{hue_carried(src_model)}, {t2 - t1:.1f}s, "
        f"{n / (t2 - t1):.1f} images/s"
    )
    if src_model.data_shape[0] == 3:  # the colour each translation kept, pair by pair
        errors = hue_errors(x.cpu(), y.cpu())
        kept = ", ".join(f"{e:.1f}°" for e in errors.tolist())
        console.print(f"hue error per pair: {kept} (median {quantile(errors, 0.5):.1f}°)")
    console.print(f"figure: {out} (top row {source}, bottom row their translations to {target})")
