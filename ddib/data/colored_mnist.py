"""Colored MNIST domains: one domain per digit, each digit given one random hue (Gushchin et al. 2023)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..color import colorize
from ..errors import DDIBError

DIGIT_DOMAINS = ("zeros", "ones", "twos", "threes", "fours", "fives", "sixes", "sevens", "eights", "nines")
DIGIT_GROUP = "digits"  # all ten digit domains as the labels of one class-conditional model
# Hues are seeded by (this seed, split) and indexed by the image's position in its MNIST split.
HUE_SEED = 20231
SPLIT_IDS = {"train": 0, "test": 1}


def split_hues(split: str, n: int) -> np.ndarray:
    """Hue in degrees of every image of an MNIST split: U[0, 360) from a generator seeded by the split."""
    return np.random.default_rng([HUE_SEED, SPLIT_IDS[split]]).uniform(0.0, 360.0, size=n)


def load_mnist(data_dir: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels (N,)) of an MNIST split, via torchvision (downloads when online)."""
    import torchvision

    if split not in SPLIT_IDS:
        raise DDIBError(f"unknown split {split!r}; use train or test")
    try:
        ds = torchvision.datasets.MNIST(root=str(data_dir), train=split == "train", download=True)
    except Exception as exc:  # torchvision raises bare RuntimeError/URLError when offline
        raise DDIBError(
            f"MNIST is not in {data_dir}/MNIST/raw and could not be downloaded ({type(exc).__name__}); "
            "point --data-dir or DDIB_DATA_DIR at a folder holding MNIST/raw/*-ubyte"
        ) from None
    return ds.data, ds.targets


def resize_digits(grey_u8: torch.Tensor, image_size: int = 32) -> torch.Tensor:
    """(N, 28, 28) uint8 digits → (N, 1, S, S) float grey levels in [0, 1] (bilinear, antialiased)."""
    grey = grey_u8.float().div(255.0)[:, None]
    if grey.shape[-1] != image_size:
        grey = F.interpolate(grey, size=(image_size, image_size), mode="bilinear", antialias=True)
    return grey.clamp(0, 1)


def color_digits(grey_u8: torch.Tensor, hues: torch.Tensor, image_size: int = 32) -> torch.Tensor:
    """Resize (N, 28, 28) uint8 digits to image_size, colour them with the hues: (N, 3, S, S) uint8."""
    out = torch.empty((len(grey_u8), 3, image_size, image_size), dtype=torch.uint8)
    for start in range(0, len(grey_u8), 4096):  # chunks bound the float32 working memory
        grey = resize_digits(grey_u8[start : start + 4096], image_size)
        rgb = colorize(grey[:, 0], hues[start : start + 4096])
        out[start : start + 4096] = rgb.mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return out


def colored_mnist(
    data_dir: str, digit: int, split: str, image_size: int = 32, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of one digit in a split, coloured: (uint8 (N, 3, S, S), their MNIST indices)."""
    images, labels = load_mnist(data_dir, split)
    hues = torch.from_numpy(split_hues(split, len(labels)))
    idx = torch.nonzero(labels == digit).flatten()
    if limit is not None:
        idx = idx[:limit]
    return color_digits(images[idx], hues[idx], image_size), idx
