"""Models trained elsewhere, as ddib denoisers: each foreign format is a network adapter plus the schedule and
parameterisation it was trained with, wrapped in the same `Diffusion` as ddib's own (k-diffusion's `external.py`
idea): the bridge, the solvers and every command see one interface, ε̂(x̄, σ̄[, label]).

Formats: diffusers folders (`diffusers_folder.py`: DDPM-type and score-SDE VE models; needs the `ddib[diffusers]`
extra) and guided-diffusion / improved-diffusion `.pt` state dicts (`guided.py`, ddib's own network in
`guided_unet.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...errors import DDIBError
from ...utils import append_dims
from ..diffusion import Diffusion, DiffusionConfig
from ..noisy_classifier import NoisyClassifier
from . import diffusers_folder, guided

FORMATS = ("diffusers", "guided-diffusion")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ExternalConfig:
    """What ddib knows of a foreign network: its format, input shape and classes (the rest stays in its files)."""

    format: str
    image_size: int
    channels: int
    num_classes: int = 0
    kind: str = "external"

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)


class ExternalNet(nn.Module):
    """A foreign network as ddib calls its own: (x_t, noise input[, labels]) → its first C output channels (a learned
    variance, when it has one, is the other C and is not needed by the ODE)."""

    def __init__(self, net: nn.Module, config: ExternalConfig):
        super().__init__()
        self.net, self.config = net, config

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None and bool((labels >= self.config.num_classes).any()):
            raise DDIBError("this class-conditional model has no unconditional mode: name one of its labels")
        return self.run(x, c_noise, labels)[:, : self.config.channels]

    def run(self, x, c_noise, labels):
        raise NotImplementedError


class DiffusersNet(ExternalNet):
    def run(self, x, c_noise, labels):
        return self.net(x, c_noise, class_labels=labels).sample


class ScoreNet(ExternalNet):
    """A score-SDE network as an ε-predictor: told σ̄ (its noise input) and x̄ = x_t/α, it gives s ≈ ∇ log p(x̄) =
    −ε/σ̄, so ε̂ = −σ̄·s (Song et al. 2021)."""

    def run(self, x, c_noise, labels):
        sigma_bar = append_dims(c_noise, x.ndim)
        return -sigma_bar * self.net(x * torch.sqrt(1 + sigma_bar**2), c_noise, class_labels=labels).sample


class GuidedNet(ExternalNet):
    def run(self, x, c_noise, labels):
        return self.net(x, c_noise, labels)


def detect_format(path: Path) -> str | None:
    """'diffusers' for a diffusers folder, 'guided-diffusion' for a .pt/.pth file, else None."""
    path = Path(path)
    if path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
        return "guided-diffusion"
    if diffusers_folder.is_diffusers_folder(path):
        return "diffusers"
    return None


def not_found(spec: str) -> DDIBError:
    """The error for a model path that is not on this machine (a hub id gets how to fetch it)."""
    if HUB_ID.match(spec) and not Path(spec).exists():
        folder = spec.split("/")[-1]
        return DDIBError(
            f"{spec} is not a local folder, and ddib downloads nothing: on a connected machine run `huggingface-cli "
            f"download {spec} --local-dir {folder}`, copy the folder here and give its path"
        )
    several = " (name several models with one option each: --domain a --domain b)" if "," in spec else ""
    return DDIBError(f"{spec} is not a model directory or file: it does not exist{several}")


@dataclass(frozen=True)
class ExternalSummary:
    """A foreign model as its configs describe it, read without its weights (`ddib models` lists many)."""

    config: ExternalConfig
    diffusion: DiffusionConfig
    classifier: tuple[int, float] | None = None  # its noisy classifier's classes and guidance scale

    @property
    def label_count(self) -> int:
        """The classes a label may name, as `Diffusion.label_count` counts them."""
        return self.config.num_classes or (self.classifier[0] if self.classifier else 0)


def describe_external(path: Path, fmt: str, flags: dict | None = None) -> ExternalSummary:
    """A foreign model's shape, classes, schedule and parameterisation, from its configs (or flags) alone; every
    config error `load_external` would give, without reading the weights."""
    path = Path(path)
    if not path.exists():
        raise not_found(str(path))
    if fmt == "diffusers":
        unet_dir, scheduler = diffusers_folder.parts(path)
        dcfg = diffusers_folder.diffusion_config(scheduler)
        c = diffusers_folder.unet_config(unet_dir, dcfg.schedule == "ve")
        size = c.get("sample_size")
        sizes = [size] if isinstance(size, int) else list(size or [])
        if not sizes:
            raise DDIBError(f"{path}: its UNet config gives no sample_size")
        if len(set(sizes)) > 1:
            raise DDIBError(f"{path}: a {'×'.join(map(str, sizes))} UNet; ddib bridges square images only")
        ecfg = ExternalConfig(fmt, int(sizes[0]), int(c.get("in_channels", 3)), int(c.get("num_class_embeds") or 0))
        return ExternalSummary(ecfg, dcfg)
    if fmt == "guided-diffusion":
        flags = _guided_flags(path, flags)
        f = guided.resolve_flags(flags)
        gcfg = guided.network_config(f)
        ecfg = ExternalConfig(fmt, gcfg.image_size, gcfg.in_channels, gcfg.num_classes)
        return ExternalSummary(ecfg, guided.diffusion_config(f), guided.classifier_summary(path, flags))
    raise DDIBError(f"unknown model format {fmt!r}; ddib reads {', '.join(FORMATS)}")


def _guided_flags(path: Path, flags: dict | None) -> dict:
    """The flags given, else the JSON beside the checkpoint."""
    if flags is not None:
        return flags
    beside = guided.flags_beside(path)
    if not beside.is_file():
        raise DDIBError(f"{path} needs its model flags: write them as JSON in {beside}, or register it with "
                        f'`ddib models add NAME {path} --flags "--image_size 256 ..."`')  # fmt: skip
    return guided.parse_flags(beside.read_text())


def load_external(path: Path, fmt: str, flags: dict | None = None,
                  device: torch.device | str = "cpu") -> Diffusion:  # fmt: skip
    """A foreign model as a `Diffusion` in eval mode, float32, without gradients."""
    path = Path(path)
    summary = describe_external(path, fmt, flags)
    classifier = None
    if fmt == "diffusers":
        score_sde = summary.diffusion.schedule == "ve"
        unet = diffusers_folder.load_unet(diffusers_folder.parts(path)[0])
        net = (ScoreNet if score_sde else DiffusersNet)(unet, summary.config)
    else:
        flags = _guided_flags(path, flags)
        unet, _, _ = guided.load_guided(path, flags)
        net = GuidedNet(unet, summary.config)
        classifier = guided.load_classifier(path, flags)
    if classifier is not None:
        cnet, classes, scale = classifier
        classifier = NoisyClassifier(cnet.to(device).eval().requires_grad_(False), classes, scale)
    model = Diffusion(net, summary.diffusion, classifier=classifier).to(device).eval()
    model.requires_grad_(False)
    return model


def describe_diffusion(cfg: DiffusionConfig) -> str:
    """'linear β × 1000, ε' — the schedule and parameterisation, for listings."""
    prediction = {"eps": "ε", "v": "v", "sample": "x₀"}[cfg.prediction]
    if cfg.schedule == "cosine":
        return f"cosine, {prediction}"
    if cfg.schedule == "ve":
        return f"VE σ {cfg.sigma_min:g}–{cfg.sigma_max:g}, score, data in [0, 1]"
    steps = len(cfg.trained_betas) if cfg.trained_betas else cfg.num_train_timesteps
    return f"{cfg.schedule} β × {steps}, {prediction}"
