"""Frozen network configs, the named UNet sizes, and the factory that builds a network from a config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

from torch import nn

from ...errors import DDIBError


@dataclass(frozen=True)
class UNetConfig:
    """A DDPM-style UNet (Ho et al. 2020) for images of shape (channels, image_size, image_size)."""

    image_size: int = 32
    channels: int = 3
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8,)
    dropout: float = 0.0
    groups: int = 8
    time_scale: float = 1000.0  # the time embedding's s (embedding.py); configs without the key used DDPM's 1000
    num_classes: int = 0  # > 0: class-conditional, a learned label embedding added to the time embedding
    kind: str = "unet"

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class MLPConfig:
    """A residual MLP with a time embedding for points in R^dim (the DDIB paper's 2-D model)."""

    dim: int = 2
    width: int = 256
    num_blocks: int = 3
    time_scale: float = 1000.0
    num_classes: int = 0
    kind: str = "mlp"

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.dim,)


ModelConfig = Union[UNetConfig, MLPConfig]

# Named sizes: `tiny` keeps tests fast, `small` is what the bundled models use, `base` is for a GPU.
UNET_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(base_channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(), groups=4),
    "small": dict(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1, attention_resolutions=(8,)),
    "medium": dict(base_channels=48, channel_mults=(1, 2, 2), num_res_blocks=2, attention_resolutions=(8,)),
    "base": dict(base_channels=64, channel_mults=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(8,)),
}


def unet_config(size: str, image_size: int = 32, channels: int = 3) -> UNetConfig:
    """The UNet config of a named size."""
    if size not in UNET_SIZES:
        raise DDIBError(f"unknown model size {size!r}; choose one of {', '.join(UNET_SIZES)}")
    cfg = UNetConfig(image_size=image_size, channels=channels, **UNET_SIZES[size])
    validate_unet(cfg)
    return cfg


def validate_unet(cfg: UNetConfig) -> None:
    factor = 2 ** (len(cfg.channel_mults) - 1)
    if cfg.image_size < factor or cfg.image_size % factor:
        raise DDIBError(f"image size {cfg.image_size} must be a positive multiple of {factor} for this model size")
    if cfg.channels not in (1, 3):
        raise DDIBError(f"images must have 1 or 3 channels, not {cfg.channels}")
    for mult in cfg.channel_mults:
        if (cfg.base_channels * mult) % cfg.groups:
            raise DDIBError("base_channels × channel_mults must be divisible by groups")


def model_config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from its JSON form, refusing unknown kinds and fields."""
    kinds = {"unet": UNetConfig, "mlp": MLPConfig}
    kind = d.get("kind")
    if kind not in kinds:
        raise DDIBError(f"unknown model kind {kind!r} in config")
    cls = kinds[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise DDIBError(f"unknown {kind} config fields: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**values)


def build_network(cfg: ModelConfig) -> nn.Module:
    """Instantiate the network a config describes."""
    if isinstance(cfg, UNetConfig):
        from .unet import UNet

        return UNet(cfg)
    from .mlp import ResidualMLP

    return ResidualMLP(cfg)
