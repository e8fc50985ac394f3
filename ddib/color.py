"""Hue colouring and hue read-back: the colored-MNIST recipe of Gushchin et al. (NeurIPS 2023)."""

from __future__ import annotations

import math

import torch

# "Digit pixels": value (max of R, G, B, scaled to [0, 1]) at least this; background is black.
DIGIT_VALUE_THRESHOLD = 0.5


def hsv_to_rgb_full_saturation(hue_deg: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """RGB of HSV(h, S=1, V): channel_n = V·(1 − clamp(min(k, 4 − k), 0, 1)), k = (n + h/60) mod 6, n = 5, 3, 1;
    h per image or per pixel."""
    h = append_hue_dims(hue_deg, value.ndim) / 60.0
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h, 6.0)
        channels.append(value * (1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)))
    return torch.stack(channels, dim=-3)


def append_hue_dims(hue: torch.Tensor, ndim: int) -> torch.Tensor:
    return hue.reshape(hue.shape + (1,) * (ndim - hue.ndim))


def colorize(grey: torch.Tensor, hue_deg: torch.Tensor) -> torch.Tensor:
    """(B, H, W) grey levels in [0, 1] and (B,) hues in degrees → (B, 3, H, W) RGB in [0, 1]."""
    return hsv_to_rgb_full_saturation(hue_deg.to(grey.dtype), grey)


def rgb_to_hue_value(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hue in degrees [0, 360) and value max(R, G, B) of (..., 3, H, W) RGB in [0, 1] (standard hexcone)."""
    r, g, b = rgb.unbind(-3)
    maxc, _ = rgb.max(-3)
    minc, _ = rgb.min(-3)
    delta = (maxc - minc).clamp_min(1e-12)
    hue = torch.where(
        maxc == r,
        torch.remainder((g - b) / delta, 6.0),
        torch.where(maxc == g, (b - r) / delta + 2, (r - g) / delta + 4),
    )
    return hue * 60.0, maxc


def digit_hue(images: torch.Tensor, threshold: float = DIGIT_VALUE_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image hue of the digit: value-weighted circular mean of the hue over digit pixels.

    `images` are (B, 3, H, W) in [-1, 1]. Digit pixels are those whose value max(R, G, B) is at least
    `threshold` on the [0, 1] scale. Returns (hue in degrees, share of digit pixels); hue is NaN where an
    image has no digit pixel.
    """
    rgb = ((images.float() + 1) / 2).clamp(0, 1)
    hue, value = rgb_to_hue_value(rgb)
    mask = (value >= threshold).float()
    weight = mask * value
    angle = torch.deg2rad(hue)
    s = (weight * torch.sin(angle)).flatten(1).sum(1)
    c = (weight * torch.cos(angle)).flatten(1).sum(1)
    mean = torch.remainder(torch.rad2deg(torch.atan2(s, c)), 360.0)
    share = mask.flatten(1).mean(1)
    mean = torch.where(share > 0, mean, torch.full_like(mean, math.nan))
    return mean, share


def hue_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Circular distance between hues in degrees, in [0, 180]."""
    d = torch.remainder(a - b, 360.0)
    return torch.minimum(d, 360.0 - d)


def rgb_to_cone(images: torch.Tensor) -> torch.Tensor:
    """RGB in [-1, 1] → the HSV cone (2V − 1, C·cos h, C·sin h), V = max(R, G, B), chroma C = max − min.

    A bijection of R³ onto R³ (continuous: the chroma vector is 0 where h is undefined) that maps the RGB cube onto
    the cone 0 ≤ C ≤ V ≤ 1; nothing is clipped, so a decoded image outside the cube comes back as it left. A hue
    shift, which is no linear map of RGB, is a rotation of the (C·cos h, C·sin h) plane here.
    """
    rgb = (images + 1) / 2
    hue, value = rgb_to_hue_value(rgb)
    chroma = value - rgb.min(-3).values
    angle = torch.deg2rad(hue)
    return torch.stack([2 * value - 1, chroma * torch.cos(angle), chroma * torch.sin(angle)], dim=-3)


def cone_to_rgb(cone: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_cone` on all of R³: RGB in [-1, 1] for points of the cone."""
    v, a, b = cone.unbind(-3)
    value = (v + 1) / 2
    chroma = torch.hypot(a, b)
    hue = torch.remainder(torch.rad2deg(torch.atan2(b, a)), 360.0)
    # HSV(h, S, V) = (V − C) + HSV(h, 1, C): the hexcone's full-saturation colour of value C, lifted to min V − C.
    rgb = hsv_to_rgb_full_saturation(hue, chroma) + (value - chroma).unsqueeze(-3)
    return rgb * 2 - 1


def chroma_angle(cone: torch.Tensor) -> torch.Tensor:
    """Per image, the angle of the summed chroma vector Σ (C·cos h, C·sin h): for a one-hue digit, its hue."""
    a, b = cone[:, 1].flatten(1).sum(1), cone[:, 2].flatten(1).sum(1)
    return torch.atan2(b, a)


def rotate_chroma(cone: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Shift every pixel's hue by `angle` (radians, per image): rotate the chroma plane, keep the value."""
    c, s = (append_hue_dims(f(angle), cone.ndim - 1) for f in (torch.cos, torch.sin))
    a, b = cone[:, 1], cone[:, 2]
    return torch.stack([cone[:, 0], c * a - s * b, s * a + c * b], dim=1)


def hue_angle(images: torch.Tensor) -> torch.Tensor:
    """Per image, the angle (radians) of its summed chroma vector in the HSV cone: a one-hue digit's hue."""
    return chroma_angle(rgb_to_cone(images))


def rotate_hue(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """RGB images in [-1, 1] with every pixel's hue shifted by `angle` (radians, per image); value and chroma kept."""
    return cone_to_rgb(rotate_chroma(rgb_to_cone(images), angle))
