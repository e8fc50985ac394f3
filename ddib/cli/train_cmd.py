"""`ddib train`: train (or resume) one domain's diffusion model."""

from __future__ import annotations

import typer

from .. import checkpoint as ckpt
from ..data import data_dir_or_default, domain_source, load_domain_images
from ..diffusion import DiffusionConfig
from ..errors import DDIBError
from ..nets import UNET_SIZES, unet_config
from ..registry import models_dir_or_default
from ..train import TrainOptions, train
from ..utils import resolve_device
from .app import app, console
from .options import DataDirOpt, DeviceOpt, ModelsDirOpt, SeedOpt
from .progress import TrainDisplay


@app.command("train")
def train_command(
    domain: str = typer.Option(
        ..., "--domain", help="Domain name: a digit domain (zeros … nines) or any name with --data"
    ),
    data: str | None = typer.Option(None, "--data", help="Folder of images to use as the domain (recursive)"),
    steps: int = typer.Option(
        10_000, "--steps", min=1, help="Train until this many optimiser steps in total"
    ),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Images per step (over all processes)"),
    lr: float = typer.Option(3e-4, "--lr", help="AdamW learning rate (after a 200-step warmup)"),
    model_size: str = typer.Option("small", "--model-size", help=f"UNet size: {', '.join(UNET_SIZES)}"),
    image_size: int = typer.Option(32, "--image-size", min=8, help="Training resolution (square)"),
    channels: int = typer.Option(3, "--channels", help="Image channels: 3 (RGB) or 1 (greyscale)"),
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    models_dir: str | None = ModelsDirOpt,
    data_dir: str | None = DataDirOpt,
    sample_every: int = typer.Option(
        1000, "--sample-every", min=0, help="Write a sample grid every N steps (0: never)"
    ),
    save_every: int = typer.Option(
        500, "--save-every", min=1, help="Checkpoint every N steps (and at the end)"
    ),
    log_every: int = typer.Option(
        100, "--log-every", min=1, help="Log line every N steps when not on a terminal"
    ),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (CUDA only)"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the training step"),
) -> None:
    """Train a domain's diffusion model; re-running the same command resumes where it stopped."""
    source = domain_source(domain, data)
    if not lr > 0:
        raise DDIBError(f"--lr must be positive, got {lr}")
    if channels not in (1, 3):
        raise DDIBError("--channels must be 1 or 3")
    model_cfg = unet_config(model_size, image_size, channels)
    run_cfg = ckpt.RunConfig(
        model=model_cfg,
        diffusion=DiffusionConfig(),
        train=ckpt.TrainConfig(batch_size=batch_size, lr=lr, seed=seed),
        domain=source.to_dict(),
    )
    dev = resolve_device(device)
    run_dir = models_dir_or_default(models_dir) / domain
    images = load_domain_images(source, data_dir_or_default(data_dir), image_size, channels)
    console.print(
        f"training [bold]{domain}[/] ({source.describe()}, {len(images)} images) → {run_dir}  "
        f"model {model_size}, batch {batch_size}, device {dev}"
    )
    opts = TrainOptions(
        steps=steps, device=dev, sample_every=sample_every, save_every=save_every, bf16=bf16, compile=compile
    )
    with TrainDisplay(steps, log_every) as display:
        train(run_dir, run_cfg, images, opts, display)
    console.print(f"done: {run_dir} (step {steps})")
