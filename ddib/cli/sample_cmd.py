"""`ddib sample`: generate images (or 2-D points) of a domain with the probability-flow ODE."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from ..bridge import ode
from ..bridge.batching import AUTO_BATCH, auto_batch_size, batch_count
from ..bridge.points import DEFAULT_POINT_BATCH, require_points, sample_points
from ..errors import DDIBError
from ..io.images import image_grid, save_png
from ..io.outputs import check_png
from ..io.point_figures import scatter_image
from ..io.points import POINT_SUFFIXES, write_points
from ..model.registry import DomainModel, load_domain_model
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
    SeedOpt,
    SymmetryOpt,
    kernel_options,
    shards,
    solve_options,
)
from .shared_decode import decode_shared


@app.command("sample")
@shards
@solve_options
@kernel_options
def sample_command(
    domain: str = typer.Option(..., "--domain", help="Domain whose model samples"),
    n: int | None = typer.Option(
        None, "-n", "--num", min=1, help="Number of images (points) [default: 64 images, 5000 points]"
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Grid PNG to write [default: <domain>-samples.png]; for point domains a scatter .png, "
        "or the points as .csv / .npy (raw coordinates)",
    ),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Write one PNG per image into this folder instead"),
    nrow: int = typer.Option(8, "--nrow", min=1, help="Images per grid row"),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help=f"Images (points) per ODE solve [default: fits the device ({AUTO_BATCH}); {DEFAULT_POINT_BATCH} points]",
    ),
    seed: int = SeedOpt,
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    guidance: float = GuidanceOpt,
    kernels: Kernels | None = None,  # --channels-last --compile --cuda-graphs --bf16 --fp16 (kernel_options)
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Sample z ~ N(0, I) and decode it with the domain's model (deterministic given --seed)."""
    if out is not None and out_dir is not None:
        raise DDIBError("give either --out or --out-dir, not both")
    dev = resolve_device(device)
    speed = kernels.resolve(dev)
    chosen = load_domain_model(domain, models_dir, dev, symmetry, guidance)
    model, loc, domain = chosen.diffusion, chosen.location, chosen.name  # the name also for a directory or MODEL:LABEL
    opts = ode.resolve_steps(opts, model)
    if chosen.is_points:
        if distributed.several_processes():
            raise DDIBError("point samples are drawn in one process (they are cheap): run without torchrun")
        _sample_points(require_points(chosen), n or 5000, out, out_dir, batch_size, seed, opts)
        return
    n = n or 64
    check_png(out)
    info, dev = distributed.setup(dev)
    model = model.to(dev)
    batch_size = batch_size or auto_batch_size([model], dev, n)
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    # Noise is drawn for all n at once, on every process, so image i depends neither on --batch-size nor on how
    # many processes share the work; each decodes its share (torchrun).
    latent = ode.sample_latent(model, n, torch.Generator().manual_seed(seed))
    gathered, nfe = decode_shared(accelerate(model, speed), latent, opts, batch_size, stats, info, "sample", domain,
                                  out_dir, lambda i: f"{domain}-{i:04d}.png")  # fmt: skip
    seconds = time.perf_counter() - t0
    distributed.teardown(info)
    if not info.is_main:
        return
    if out_dir is not None:
        where = f"{out_dir}/ ({n} files)"
    else:
        out = out or Path(f"{domain}-samples.png")
        save_png(image_grid(torch.stack(gathered), nrow=nrow), out)
        where = str(out)
    procs = f" on {info.world_size} processes" if info.enabled else ""
    console.print(
        f"sampled {n} {domain} ({loc.where}) with {ode.describe_solve(opts, model)}"
        f"{f', guidance w = {guidance:g}' if guidance else ''}{describe_precision(speed)}{procs}: {nfe:.0f} NFE per "
        f"image{describe_averaging(model.config.symmetry)}, "
        f"{seconds:.1f}s → {where}"
    )


def _sample_points(
    pm: DomainModel, n: int, out: Path | None, out_dir: Path | None, batch_size, seed: int, opts
) -> None:
    """Point domains: a scatter PNG, or the points (raw coordinates) as .csv / .npy."""
    if out_dir is not None:
        raise DDIBError(f"{pm.name} is a point domain: write its samples with --out FILE.png|.csv|.npy")
    out = out or Path(f"{pm.name}-samples.png")
    if out.suffix.lower() not in (".png", *POINT_SUFFIXES):
        raise DDIBError(f"--out {out}: point samples are written as .png (scatter plot), .csv or .npy")
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    batch_size = batch_size or DEFAULT_POINT_BATCH
    x = sample_points(pm.diffusion, n, seed, opts, stats, batch_size)
    seconds = time.perf_counter() - t0
    raw = pm.to_raw(x)
    if out.suffix.lower() == ".png":
        save_png(scatter_image(raw, f"{n} {pm.name} samples (raw coordinates), {opts.describe()}"), out)
    else:
        write_points(out, raw)
    nfe = stats.nfe / batch_count(n, batch_size)
    console.print(
        f"sampled {n} {pm.name} points ({pm.where}) with {opts.describe()}: {nfe:.0f} NFE per "
        f"point, {seconds:.1f}s → {out}"
    )
