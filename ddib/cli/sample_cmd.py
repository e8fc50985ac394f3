"""`ddib sample`: generate images of a domain with the probability-flow ODE."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from .. import ode
from ..errors import DDIBError
from ..images import image_grid, save_png, to_pil
from ..registry import load_domain_model
from ..utils import resolve_device
from .app import app, console
from .options import AtolOpt, DeviceOpt, ModelsDirOpt, RtolOpt, SeedOpt, SolverOpt, StepsOpt, ode_options


@app.command("sample")
def sample_command(
    domain: str = typer.Option(..., "--domain", help="Domain whose model samples"),
    n: int = typer.Option(64, "-n", "--num", min=1, help="Number of images"),
    out: Path | None = typer.Option(None, "--out", help="Grid PNG to write [default: <domain>-samples.png]"),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Write one PNG per image into this folder instead"
    ),
    nrow: int = typer.Option(8, "--nrow", min=1, help="Images per grid row"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Images per ODE solve"),
    seed: int = SeedOpt,
    solver: str = SolverOpt,
    steps: int = StepsOpt,
    rtol: float = RtolOpt,
    atol: float = AtolOpt,
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
) -> None:
    """Sample z ~ N(0, I) and decode it with the domain's model (deterministic given --seed)."""
    if out is not None and out_dir is not None:
        raise DDIBError("give either --out or --out-dir, not both")
    opts = ode_options(solver, steps, rtol, atol)
    dev = resolve_device(device)
    model, cfg, loc = load_domain_model(domain, models_dir, dev)
    if cfg.model.kind != "unet":
        raise DDIBError(f"{domain} is a point domain; sample it with `ddib sample-points`")
    gen = torch.Generator().manual_seed(seed)
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    # Noise is drawn for all n at once so the images do not depend on --batch-size.
    z = torch.randn((n, *model.data_shape), generator=gen)
    chunks = [
        ode.decode(model, z[i : i + batch_size].to(dev), opts, stats).cpu() for i in range(0, n, batch_size)
    ]
    x = torch.cat(chunks)
    seconds = time.perf_counter() - t0
    if out_dir is not None:
        for i, img in enumerate(x):
            save_png(to_pil(img), out_dir / f"{domain}-{i:04d}.png")
        where = f"{out_dir}/ ({n} files)"
    else:
        out = out or Path(f"{domain}-samples.png")
        save_png(image_grid(x, nrow=nrow), out)
        where = str(out)
    nfe = stats.nfe // max(1, len(chunks))
    console.print(
        f"sampled {n} {domain} ({loc.origin} model) with {opts.describe()}: {nfe} NFE per image, "
        f"{seconds:.1f}s → {where}"
    )
