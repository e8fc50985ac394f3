"""A training run's recipe: what the user asked for, completed with the defaults of the domain's kind and with the
settings a resumed run started with, into the run's config, its data and (for a warm start) its first weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import domain_source, load_labelled_images, load_point_domain
from ..data.augment import check_augment
from ..data.domains import DomainSource
from ..data.points import DEFAULT_TRAIN_POINTS, POINT_DOMAINS
from ..errors import DDIBError
from ..io.images import ImageBatch
from ..model import checkpoint as ckpt
from ..model.diffusion import DiffusionConfig
from ..model.external import detect_format
from ..model.nets import MLPConfig, unet_config
from ..model.references import is_reference_dir, read_reference

IMAGE_DEFAULTS = {"steps": 10_000, "batch_size": 128, "lr": 3e-4, "model_size": "small"}
# Point domains: the paper's MLP (width 256, 3 residual blocks); large batches and a higher learning rate,
# because a 2-D density is learnt from many cheap points (the official code used batch 30,000, lr 1e-4).
POINT_DEFAULTS = {"steps": 12_000, "batch_size": 1024, "lr": 1e-3, "width": 256, "blocks": 3}
DEFAULT_PREDICTION = "eps"
# --time-embedding: (what the network sees of the noise level, the embedding's scale). `ddpm` is t·1000, whose
# fastest feature turns 159 times over t ∈ [0, 1], faster than a 20-step solve samples; `smooth` is the log-SNR
# position with scale 10, under two turns over the whole noise range (docs/solvers.md).
TIME_EMBEDDINGS = {"ddpm": ("t", 1000.0), "smooth": ("log-snr", 10.0)}
# Classifier-free guidance's usual share (Ho & Salimans 2022): the conditional model also learns the union.
DEFAULT_LABEL_DROPOUT = 0.1
DEFAULT_EMA_DECAY = 0.999


@dataclass(frozen=True)
class TrainRequest:
    """`ddib train`'s options as given (None: not given, so the default, or the resumed run's setting)."""

    domain: str
    data: tuple[str, ...] = ()
    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    cooldown: int = 0
    prediction: str | None = None
    symmetry: str | None = None
    time_embedding: str | None = None
    ema_decay: float | None = None
    label_dropout: float | None = None
    augment: str | None = None
    color_space: str | None = None
    quotient: str | None = None
    init_from: str | None = None
    model_size: str | None = None
    image_size: int = 32
    channels: int = 3
    n_points: int | None = None
    width: int | None = None
    blocks: int | None = None
    seed: int = 0
    skip_bad: bool = False


@dataclass
class TrainPlan:
    """Everything `train.loop.train` needs, and what to tell the user about it."""

    run_dir: Path
    config: ckpt.RunConfig
    steps: int
    source: DomainSource
    data: torch.Tensor
    labels: torch.Tensor | None
    images: ImageBatch | None  # what was read (and skipped) for image domains
    init_weights: dict[str, torch.Tensor] | None
    summary: str  # "model small (v-prediction, smooth time embedding), batch 64, lr 0.0005"


def plan_run(request: TrainRequest, run_dir: Path, data_dir: str) -> TrainPlan:
    """Resolve the request against the domain and the run directory; load the training data."""
    r = request
    if is_reference_dir(run_dir):
        ref = read_reference(run_dir)
        raise DDIBError(
            f"{r.domain} is a registered {ref.format} model ({ref.path}); ddib trains and resumes only its own "
            "format: train under another --domain name, or keep training it with its own tools"
        )
    source = domain_source(r.domain, list(r.data) or None)
    points = source.kind == "points"
    defaults = POINT_DEFAULTS if points else IMAGE_DEFAULTS
    steps = defaults["steps"] if r.steps is None else r.steps
    batch_size = defaults["batch_size"] if r.batch_size is None else r.batch_size
    lr = defaults["lr"] if r.lr is None else r.lr
    if not lr > 0:
        raise DDIBError(f"--lr must be positive, got {lr}")
    if r.cooldown > steps:
        raise DDIBError(f"--cooldown {r.cooldown} is longer than the run (--steps {steps})")
    saved = saved_config(run_dir)
    augment = r.augment or _saved(saved, "train", "augment", "none")
    ema_decay = r.ema_decay if r.ema_decay is not None else _saved(saved, "train", "ema_decay", DEFAULT_EMA_DECAY)
    if not 0.0 <= ema_decay < 1.0:
        raise DDIBError(f"--ema-decay must be in [0, 1), got {ema_decay}")
    check_augment(augment, hue_uniform=source.hue_uniform and r.channels == 3)
    color_space = r.color_space or _saved(saved, "diffusion", "color_space", "rgb")
    if color_space == "cone" and not (source.hue_uniform and r.channels == 3):
        # Hue equivariance is a symmetry only of domains whose hue is uniform and independent of the shape.
        raise DDIBError("--color-space cone needs a colored-MNIST digit domain (uniform hue at full saturation)")
    new_quotient = default_quotient(source, r.channels, color_space, augment, r.symmetry)
    quotient = r.quotient or _saved(saved, "diffusion", "quotient", new_quotient)
    if quotient == "hue" and not (source.hue_uniform and r.channels == 3):
        # Leaving the hue out is exact only where the hue is uniform and independent of the shape.
        raise DDIBError("--quotient hue needs a colored-MNIST digit domain (uniform hue at full saturation)")
    conditional = source.kind == "group"
    if r.label_dropout is not None and not conditional:
        raise DDIBError("--label-dropout is for conditional models (--domain digits, or --data LABEL=FOLDER ...)")
    label_dropout = r.label_dropout
    if label_dropout is None:
        label_dropout = _saved(saved, "train", "label_dropout", DEFAULT_LABEL_DROPOUT if conditional else 0.0)
    if not 0.0 <= label_dropout < 1.0:
        raise DDIBError(f"--label-dropout must be in [0, 1), got {label_dropout}")

    images = labels = None
    if points:
        if r.model_size is not None:
            raise DDIBError(f"--model-size is for image domains; {r.domain} is a point domain (use --width/--blocks)")
        model_cfg = MLPConfig(width=r.width or defaults["width"], num_blocks=r.blocks or defaults["blocks"])
        source, data = load_point_domain(source, r.n_points or DEFAULT_TRAIN_POINTS, r.seed)
        model_text = f"MLP width {model_cfg.width}, {model_cfg.num_blocks} blocks"
    else:
        unused = [o for o, v in (("--n-points", r.n_points), ("--width", r.width), ("--blocks", r.blocks)) if v]
        if unused:
            raise DDIBError(f"{', '.join(unused)} apply to point domains only ({', '.join(POINT_DOMAINS)})")
        if r.channels not in (1, 3):
            raise DDIBError("--channels must be 1 or 3")
        size = r.model_size or defaults["model_size"]
        model_cfg = dataclasses.replace(unet_config(size, r.image_size, r.channels), num_classes=len(source.members))
        images, labels = load_labelled_images(source, data_dir, r.image_size, r.channels, skip_bad=r.skip_bad)
        data = images.pixels
        model_text = f"model {size}" + (f", conditional on {len(source.members)} labels" if conditional else "")

    saved_input = _saved(saved, "diffusion", "noise_input", "t")
    embedding = r.time_embedding or next(k for k, (inp, _) in TIME_EMBEDDINGS.items() if inp == saved_input)
    if embedding not in TIME_EMBEDDINGS:
        raise DDIBError(f"unknown --time-embedding {embedding!r}; use one of {', '.join(TIME_EMBEDDINGS)}")
    noise_input, time_scale = TIME_EMBEDDINGS[embedding]
    config = ckpt.RunConfig(
        model=dataclasses.replace(model_cfg, time_scale=time_scale),
        diffusion=DiffusionConfig(
            prediction=r.prediction or _saved(saved, "diffusion", "prediction", DEFAULT_PREDICTION),
            symmetry=r.symmetry
            or _saved(saved, "diffusion", "symmetry", default_symmetry(source, r.channels, color_space, quotient)),
            noise_input=noise_input,
            color_space=color_space,
            quotient=quotient,
        ),
        train=ckpt.TrainConfig(
            batch_size=batch_size,
            lr=lr,
            cooldown_steps=r.cooldown,
            seed=r.seed,
            augment=augment,
            ema_decay=ema_decay,
            label_dropout=label_dropout,
        ),  # fmt: skip
        domain=source.to_dict(),
    )
    init_weights = None
    if r.init_from is not None and not ckpt.has_train_state(run_dir):
        config, init_weights = warm_start(config, r.init_from)
    notes = [f"{config.diffusion.prediction}-prediction"]
    notes += [] if embedding == "ddpm" else [f"{embedding} time embedding"]
    notes += [f"warm start from {r.init_from}"] if init_weights else ["resumed: no warm start"] if r.init_from else []
    notes += [] if augment == "none" else [f"{augment} augmentation"]
    notes += [] if color_space == "rgb" else ["HSV cone, hue-equivariant"]
    notes += [] if quotient == "none" else ["hue left out (trained on hue 0)"]
    summary = f"{model_text} ({', '.join(notes)}), batch {batch_size}"
    return TrainPlan(run_dir, config, steps, source, data, labels, images, init_weights, summary)


def warm_start(run_cfg: ckpt.RunConfig, init_from: str) -> tuple[ckpt.RunConfig, dict]:
    """The new run's config, recording where it started, and the starting weights; same domain and network only."""
    if detect_format(Path(init_from)) is not None:
        raise DDIBError(f"--init-from {init_from} is a {detect_format(Path(init_from))} model; ddib warm-starts only "
                        "from its own models (the networks differ)")  # fmt: skip
    model, init_cfg, metadata = ckpt.load_model(_init_path(init_from))
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


def _init_path(init_from: str) -> Path:
    """--init-from: a model directory, or the name of a bundled model (`fives-rgb`)."""
    from ..model.registry import BUNDLED_DIR, is_model_path

    path, bundled = Path(init_from), BUNDLED_DIR / init_from
    if not path.exists() and not is_model_path(init_from) and (bundled / ckpt.CONFIG_FILE).is_file():
        return bundled
    return path


def saved_config(run_dir: Path) -> ckpt.RunConfig | None:
    """The config a run was started with (so resuming needs none of its options again), if there is one."""
    return ckpt.read_config(run_dir)[0] if (run_dir / ckpt.CONFIG_FILE).exists() else None


def _saved(saved: ckpt.RunConfig | None, section: str, key: str, default):
    return default if saved is None else getattr(getattr(saved, section), key)


def default_quotient(source: DomainSource, channels: int, color_space: str, augment: str, symmetry: str | None) -> str:
    """A coloured-digit domain is its hue-0 slice times a uniform hue, and a pair of hue-quotient models carries the
    hue exactly (docs/colour.md): the default, unless the run asks for a full-colour option."""
    full_colour = color_space != "rgb" or augment == "hue" or symmetry not in (None, "none", "rgb-flip")
    return "hue" if source.kind == "mnist" and channels == 3 and not full_colour else "none"


def default_symmetry(source: DomainSource, channels: int, color_space: str = "rgb", quotient: str = "none") -> str:
    """The colored-MNIST recipe draws hues uniformly at full saturation: invariant under RGB permutations, and in
    the HSV cone under every hue rotation (built into the model) and reflection (averaged over). A hue-quotient
    model's hue-0 slice has no hue left to average over."""
    if quotient == "hue":
        return "none"
    if color_space == "cone":
        return "chroma-flip"
    # rgb-cyclic, not rgb-all: most of the gain at half the cost (docs/quality.md).
    return "rgb-cyclic" if source.hue_uniform and channels == 3 else "none"
