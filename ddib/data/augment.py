"""Training-time augmentation by an exact symmetry of a domain: the colored-MNIST recipe's hue.

A colored-MNIST image is HSV(h, S = 1, V = grey digit) with h ~ U[0, 360) drawn independently of the digit, so
the domain's distribution is unchanged by re-drawing h; the grey digit is recovered exactly as V = max(R, G, B).
Re-colouring every draw with a fresh hue keeps the domain and gives unlimited colour samples (nothing crosses
domains).
"""

from __future__ import annotations

import torch

from ..color import colorize
from ..errors import DDIBError

AUGMENTS = ("none", "hue")


def check_augment(name: str, hue_uniform: bool) -> None:
    """`name` is a known augmentation that applies to the domain (hue needs the colored-MNIST colouring)."""
    if name not in AUGMENTS:
        raise DDIBError(f"unknown augmentation {name!r}; use one of {', '.join(AUGMENTS)}")
    if name == "hue" and not hue_uniform:
        raise DDIBError(
            "--augment hue needs a colored-MNIST digit domain (uniform hue at full saturation); "
            "use --augment none for this domain"
        )


def resample_hue(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) uint8 images re-coloured HSV(h', 1, max(R, G, B)) with fresh h' ~ U[0, 360) per image."""
    grey = images.max(dim=1).values.float().div(255.0)
    hues = torch.rand(images.shape[0], generator=generator, device=images.device, dtype=torch.float64) * 360.0
    return colorize(grey, hues.float()).mul(255.0).round().clamp(0, 255).to(torch.uint8)


def augment_batch(images: torch.Tensor, name: str, generator: torch.Generator) -> torch.Tensor:
    """Apply the run's augmentation to a batch (identity for `none`)."""
    return resample_hue(images, generator) if name == "hue" else images
