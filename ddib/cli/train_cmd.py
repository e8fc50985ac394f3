"""`ddib train`: train (or resume) one domain's diffusion model."""

from __future__ import annotations

import typer

from ..data import data_dir_or_default
from ..data.points import DEFAULT_TRAIN_POINTS, POINT_DOMAINS
from ..model.nets import UNET_SIZES
from ..model.registry import models_dir_or_default
from ..model.speed import default_speed
from ..train import distributed
from ..train.loop import TrainOptions, train
from ..train.recipe import DEFAULT_PREDICTION, POINT_DEFAULTS, TrainRequest, plan_run
from ..utils import resolve_device
from .app import app, console
from .options import DataDirOpt, DeviceOpt, ModelsDirOpt, SeedOpt, SkipBadOpt, report_skipped, shards
from .progress import TrainDisplay


@app.command("train")
@shards
def train_command(
    domain: str = typer.Option(
        ...,
        "--domain",
        help=f"Domain name: a digit domain (zeros … nines), digits (all ten as one conditional model), a 2-D point "
        f"domain ({', '.join(POINT_DOMAINS)}), or any name with --data",
    ),
    data: list[str] | None = typer.Option(
        None,
        "--data",
        help="Folder of images to use as the domain (recursive); repeat as LABEL=FOLDER to train one "
        "class-conditional model over several domains",
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        min=1,
        help="Train until this many optimiser steps in total [default: 10000 for "
        f"images, {POINT_DEFAULTS['steps']} for points]",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="Images (points) per step, over all processes [default: 128 for "
        f"images, {POINT_DEFAULTS['batch_size']} for points]",
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="AdamW learning rate (after a 200-step warmup) [default: 3e-4 for images, 1e-3 for points]"
    ),
    cooldown: int = typer.Option(
        0,
        "--cooldown",
        min=0,
        help="Decay the learning rate linearly to 0 over the last N of --steps (can be started when resuming)",
    ),
    prediction: str | None = typer.Option(
        None,
        "--prediction",
        help="What the network predicts: v (= αε − σx₀, bounded x̂₀ at high noise) or eps "
        f"[default: {DEFAULT_PREDICTION} for a new run, the saved one when resuming]",
    ),
    symmetry: str | None = typer.Option(
        None,
        "--symmetry",
        help="Colour symmetries the domain is invariant under; inference averages ε̂ over them: none, "
        "rgb-cyclic, rgb-all, rgb-flip (RGB models), chroma-flip (cone models) [default: none for hue-quotient models, "
        "rgb-cyclic for other coloured-digit models, chroma-flip for cone models, otherwise none; the saved one when "
        "resuming]",
    ),
    time_embedding: str | None = typer.Option(
        None,
        "--time-embedding",
        help="Noise-level conditioning: ddpm (sinusoids of 1000·t) or smooth (of the log-SNR position, scale 10) "
        "[default: ddpm for a new run, the saved one when resuming]",
    ),
    ema_decay: float | None = typer.Option(
        None,
        "--ema-decay",
        help="Decay of the weights' exponential moving average (the exported model) [default: 0.999 for a new run, "
        "the saved one when resuming]",
    ),
    label_dropout: float | None = typer.Option(
        None,
        "--label-dropout",
        help="Conditional models: share of training labels dropped so the network also learns the union "
        "(classifier-free guidance) [default: 0.1 for a new run, the saved one when resuming]",
    ),
    augment: str | None = typer.Option(
        None,
        "--augment",
        help="Training-time augmentation by an exact symmetry of the domain: hue (re-draw each colored-MNIST "
        "image's hue every step) or none [default: none for a new run, the saved one when resuming]",
    ),
    color_space: str | None = typer.Option(
        None,
        "--color-space",
        help="Where the diffusion runs: rgb, or cone (colored-MNIST digits: HSV-cone coordinates with a denoiser "
        "exactly equivariant to hue rotations) [default: rgb for a new run, the saved one when resuming]",
    ),
    quotient: str | None = typer.Option(
        None,
        "--quotient",
        help="What the model leaves out of its domain: none, or hue (colored-MNIST digits: model the hue-0 slice; "
        "a bridge carries each image's hue exactly) [default: hue for a new coloured-digit run unless it asks for "
        "--augment hue, --color-space cone or a hue-shifting --symmetry, otherwise none; the saved one when resuming]",
    ),
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        help="Warm start a new run from this model directory's weights, or a bundled model's (fives-rgb); same "
        "domain and network (e.g. to fine-tune an eps model into a v model)",
    ),
    model_size: str | None = typer.Option(
        None, "--model-size", help=f"UNet size (image domains): {', '.join(UNET_SIZES)} [default: small]"
    ),
    image_size: int = typer.Option(32, "--image-size", min=8, help="Training resolution (square)"),
    channels: int = typer.Option(3, "--channels", help="Image channels: 3 (RGB) or 1 (greyscale)"),
    n_points: int | None = typer.Option(
        None, "--n-points", min=1, help=f"Point domains: training set size [default: {DEFAULT_TRAIN_POINTS}]"
    ),
    width: int | None = typer.Option(None, "--width", min=1, help="Point domains: MLP width [default: 256]"),
    blocks: int | None = typer.Option(None, "--blocks", min=1, help="Point domains: residual MLP blocks [default: 3]"),
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    models_dir: str | None = ModelsDirOpt,
    data_dir: str | None = DataDirOpt,
    sample_every: int = typer.Option(
        1000, "--sample-every", min=0, help="Write a sample grid (scatter plot for points) every N steps (0: never)"
    ),
    save_every: int = typer.Option(500, "--save-every", min=1, help="Checkpoint every N steps (and at the end)"),
    log_every: int = typer.Option(
        100, "--log-every", min=1, help="Line in train_log.jsonl (and on stdout off a terminal) every N steps"
    ),
    bf16: bool = typer.Option(False, "--bf16", help="bfloat16 autocast (CUDA only)"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the training step"),
    channels_last: bool | None = typer.Option(
        None, "--channels-last/--no-channels-last", help="NHWC UNet and batches [default: the measured best per device]"
    ),
    skip_bad: bool = SkipBadOpt,
) -> None:
    """Train a domain's diffusion model; re-running the same command resumes where it stopped."""
    request = TrainRequest(
        domain=domain, data=tuple(data or ()), steps=steps, batch_size=batch_size, lr=lr, cooldown=cooldown,
        prediction=prediction, symmetry=symmetry, time_embedding=time_embedding, ema_decay=ema_decay,
        label_dropout=label_dropout, augment=augment, color_space=color_space, quotient=quotient,
        init_from=init_from,
        model_size=model_size, image_size=image_size, channels=channels, n_points=n_points, width=width,
        blocks=blocks, seed=seed, skip_bad=skip_bad,
    )  # fmt: skip
    info, dev = distributed.setup(resolve_device(device))
    plan = plan_run(request, models_dir_or_default(models_dir) / domain, data_dir_or_default(data_dir))
    tcfg, what = plan.config.train, "points" if plan.source.kind == "points" else "images"
    procs = f", {info.world_size} processes × {tcfg.batch_size // info.world_size}" if info.enabled else ""
    cool = f" (cooldown over the last {tcfg.cooldown_steps})" if tcfg.cooldown_steps else ""
    if info.is_main:
        console.print(
            f"training [bold]{domain}[/] ({plan.source.describe()}, {len(plan.data)} {what}) → {plan.run_dir}  "
            f"{plan.summary}{procs}, lr {tcfg.lr:g}{cool}, {plan.steps} steps, device {dev}"
        )
    opts = TrainOptions(
        steps=plan.steps, device=dev, sample_every=sample_every, save_every=save_every, bf16=bf16, compile=compile,
        channels_last=default_speed(dev).channels_last if channels_last is None else channels_last,
        rank=info.rank, world_size=info.world_size, log_every=log_every, stop_on_signal=True,
    )  # fmt: skip
    unit = "pts" if what == "points" else "img"
    try:
        with TrainDisplay(plan.steps, log_every, enabled=info.is_main, unit=unit) as display:
            train(plan.run_dir, plan.config, plan.data, opts, display, plan.init_weights, plan.labels)
    finally:
        distributed.teardown(info)
    if info.is_main:
        same = f"; weights identical on all {info.world_size} processes at every checkpoint" if info.enabled else ""
        console.print(f"done: {plan.run_dir} (step {plan.steps}{same})")
        if plan.images is not None:
            report_skipped(plan.images)
