"""`ddib train`: train (or resume) one domain's diffusion model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from ..data import data_dir_or_default, domain_source, load_labelled_images, load_point_domain
from ..data.augment import check_augment
from ..data.points import DEFAULT_TRAIN_POINTS, POINT_DOMAINS
from ..errors import DDIBError
from ..model import checkpoint as ckpt
from ..model.diffusion import DiffusionConfig
from ..model.nets import UNET_SIZES, MLPConfig, unet_config
from ..model.registry import models_dir_or_default
from ..model.speed import default_speed
from ..train import distributed
from ..train.loop import TrainOptions, train
from ..utils import resolve_device
from .app import app, console
from .options import DataDirOpt, DeviceOpt, ModelsDirOpt, SeedOpt, SkipBadOpt, report_skipped
from .progress import TrainDisplay

# Typer defaults are fixed, so options whose default depends on the domain's kind default to None here.
IMAGE_DEFAULTS = {"steps": 10_000, "batch_size": 128, "lr": 3e-4}
# ε, not v: warm-started v-models of the bundled pair fixed x̂₀ at high noise but kept a worse hue (README).
DEFAULT_PREDICTION = "eps"
# --time-embedding: (what the network sees of the noise level, the embedding's scale). `ddpm` is t·1000, whose
# fastest feature turns 159 times over t ∈ [0, 1], faster than a 20-step solve samples (README, "Choosing the
# default solver"); `smooth` is the log-SNR position with scale 10, under two turns over the whole noise range.
TIME_EMBEDDINGS = {"ddpm": ("t", 1000.0), "smooth": ("log-snr", 10.0)}
# Classifier-free guidance's usual share (Ho & Salimans 2022): the conditional model also learns the union.
DEFAULT_LABEL_DROPOUT = 0.1
# Point domains: the paper's MLP (width 256, 3 residual blocks); large batches and a higher learning rate,
# because a 2-D density is learnt from many cheap points (the official code used batch 30,000, lr 1e-4).
POINT_DEFAULTS = {"steps": 12_000, "batch_size": 1024, "lr": 1e-3, "width": 256, "blocks": 3}


@app.command("train")
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
        help="Channel permutations the domain is invariant under; inference averages ε̂ over them: none, "
        "rgb-cyclic, rgb-all [default: rgb-cyclic for coloured digits, none otherwise; the saved one when resuming]",
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
    init_from: str | None = typer.Option(
        None,
        "--init-from",
        help="Warm start a new run from this model directory's weights (same domain and network; e.g. to "
        "fine-tune an eps model into a v model)",
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
    source = domain_source(domain, data)
    points = source.kind == "points"
    defaults = POINT_DEFAULTS if points else IMAGE_DEFAULTS
    steps = defaults["steps"] if steps is None else steps
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    lr = defaults["lr"] if lr is None else lr
    if not lr > 0:
        raise DDIBError(f"--lr must be positive, got {lr}")
    if cooldown > steps:
        raise DDIBError(f"--cooldown {cooldown} is longer than the run (--steps {steps})")
    info, dev = distributed.setup(resolve_device(device))
    run_dir = models_dir_or_default(models_dir) / domain
    augment = augment or saved_setting(run_dir, "train", "augment", "none")
    ema_decay = ema_decay if ema_decay is not None else saved_setting(run_dir, "train", "ema_decay", 0.999)
    if not 0.0 <= ema_decay < 1.0:
        raise DDIBError(f"--ema-decay must be in [0, 1), got {ema_decay}")
    check_augment(augment, hue_uniform=source.hue_uniform and channels == 3)
    conditional = source.kind == "group"
    if label_dropout is not None and not conditional:
        raise DDIBError("--label-dropout is for conditional models (--domain digits, or --data LABEL=FOLDER ...)")
    if label_dropout is None:
        label_dropout = saved_setting(run_dir, "train", "label_dropout", DEFAULT_LABEL_DROPOUT if conditional else 0.0)
    if not 0.0 <= label_dropout < 1.0:
        raise DDIBError(f"--label-dropout must be in [0, 1), got {label_dropout}")
    images = labels = None
    if points:
        if model_size is not None:
            raise DDIBError(f"--model-size is for image domains; {domain} is a point domain (use --width/--blocks)")
        model_cfg = MLPConfig(width=width or POINT_DEFAULTS["width"], num_blocks=blocks or POINT_DEFAULTS["blocks"])
        source, data_tensor = load_point_domain(source, n_points or DEFAULT_TRAIN_POINTS, seed)
        model_desc = f"MLP width {model_cfg.width}, {model_cfg.num_blocks} blocks"
        what = "points"
    else:
        unused = [o for o, v in (("--n-points", n_points), ("--width", width), ("--blocks", blocks)) if v is not None]
        if unused:
            raise DDIBError(f"{', '.join(unused)} apply to point domains only ({', '.join(POINT_DOMAINS)})")
        if channels not in (1, 3):
            raise DDIBError("--channels must be 1 or 3")
        model_size = model_size or "small"
        model_cfg = dataclasses.replace(unet_config(model_size, image_size, channels), num_classes=len(source.members))
        images, labels = load_labelled_images(source, data_dir_or_default(data_dir), image_size, channels,
                                              skip_bad=skip_bad)  # fmt: skip
        data_tensor = images.pixels
        model_desc = f"model {model_size}" + (f", conditional on {len(source.members)} labels" if conditional else "")
        what = "images"
    if time_embedding is None:
        saved_input = saved_diffusion(run_dir, "noise_input", "t")
        time_embedding = next(k for k, (inp, _) in TIME_EMBEDDINGS.items() if inp == saved_input)
    if time_embedding not in TIME_EMBEDDINGS:
        raise DDIBError(f"unknown --time-embedding {time_embedding!r}; use one of {', '.join(TIME_EMBEDDINGS)}")
    noise_input, time_scale = TIME_EMBEDDINGS[time_embedding]
    model_cfg = dataclasses.replace(model_cfg, time_scale=time_scale)
    run_cfg = ckpt.RunConfig(
        model=model_cfg,
        diffusion=DiffusionConfig(
            prediction=prediction or saved_diffusion(run_dir, "prediction", DEFAULT_PREDICTION),
            symmetry=symmetry or saved_diffusion(run_dir, "symmetry", default_symmetry(source, channels)),
            noise_input=noise_input,
        ),
        train=ckpt.TrainConfig(
            batch_size=batch_size,
            lr=lr,
            cooldown_steps=cooldown,
            seed=seed,
            augment=augment,
            ema_decay=ema_decay,
            label_dropout=label_dropout,
        ),
        domain=source.to_dict(),
    )
    init_weights = None
    if init_from is not None and not (run_dir / ckpt.STATE_FILE).exists():
        run_cfg, init_weights = warm_start(run_cfg, init_from)
    procs = f", {info.world_size} processes × {batch_size // max(1, info.world_size)}" if info.enabled else ""
    cool = f" (cooldown over the last {cooldown})" if cooldown else ""
    start = f", warm start from {init_from}" if init_weights else ", resumed: no warm start" if init_from else ""
    start = ("" if time_embedding == "ddpm" else f", {time_embedding} time embedding") + start
    start += "" if augment == "none" else f", {augment} augmentation"
    if info.is_main:
        console.print(
            f"training [bold]{domain}[/] ({source.describe()}, {len(data_tensor)} {what}) → {run_dir}  "
            f"{model_desc} ({run_cfg.diffusion.prediction}-prediction{start}), batch {batch_size}{procs}, "
            f"lr {lr:g}{cool}, {steps} steps, device {dev}"
        )
    opts = TrainOptions(
        steps=steps, device=dev, sample_every=sample_every, save_every=save_every, bf16=bf16, compile=compile,
        channels_last=default_speed(dev).channels_last if channels_last is None else channels_last,
        rank=info.rank, world_size=info.world_size, log_every=log_every, stop_on_signal=True,
    )  # fmt: skip
    try:
        with TrainDisplay(steps, log_every, enabled=info.is_main, unit="pts" if points else "img") as display:
            train(run_dir, run_cfg, data_tensor, opts, display, init_weights, labels)
    finally:
        distributed.teardown(info)
    if info.is_main:
        same = f"; weights identical on all {info.world_size} processes at every checkpoint" if info.enabled else ""
        console.print(f"done: {run_dir} (step {steps}{same})")
        if images is not None:
            report_skipped(images)


def warm_start(run_cfg: ckpt.RunConfig, init_from: str) -> tuple[ckpt.RunConfig, dict]:
    """The new run's config, recording where it started, and the starting weights; same domain and network only."""
    model, init_cfg, metadata = ckpt.load_model(Path(init_from))
    if init_cfg.domain != run_cfg.domain:
        # A model of another domain would carry that domain's data into this one: the two DDIB models must
        # never see each other's data.
        raise DDIBError(
            f"--init-from {init_from} is a model of {init_cfg.domain.get('name')}, not of {run_cfg.domain['name']}"
        )
    # The embedding's scale has no weights: a warm start may change it (fine-tuning onto a smooth embedding).
    if dataclasses.replace(init_cfg.model, time_scale=run_cfg.model.time_scale) != run_cfg.model:
        raise DDIBError(f"--init-from {init_from} has another network ({init_cfg.model}); use the same --model-size")
    init = {
        "path": str(init_from),
        "prediction": init_cfg.diffusion.prediction,
        "trained_steps": metadata.get("step"),
    }
    return dataclasses.replace(run_cfg, init=init), model.net.state_dict()


def saved_setting(run_dir: Path, section: str, key: str, default):
    """A setting the run was started with (so resuming needs no --prediction or --augment), else the default."""
    config = run_dir / ckpt.CONFIG_FILE
    return getattr(getattr(ckpt.read_config(run_dir)[0], section), key) if config.exists() else default


def saved_diffusion(run_dir: Path, key: str, default: str) -> str:
    return saved_setting(run_dir, "diffusion", key, default)


def default_symmetry(source, channels: int) -> str:
    """The colored-MNIST recipe draws hues uniformly at full saturation: invariant under RGB permutations."""
    # rgb-cyclic, not rgb-all: it takes most of the gain at half the cost (README, "Symmetry").
    return "rgb-cyclic" if source.hue_uniform and channels == 3 else "none"
