"""Sinusoidal time embedding (Vaswani et al. 2017, as used by DDPM)."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """emb(t)_i = [sin(s·t·ω_i), cos(s·t·ω_i)], ω_i = 10000^(-i/(d/2)), t ∈ [0, 1] scaled by s (DDPM: 1000)."""

    def __init__(self, dim: int, scale: float = 1000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = self.scale * t.to(self.freqs.dtype)[:, None] * self.freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class LabelEmbedding(nn.Module):
    """A learned vector per class plus one for "no label" (index num_classes), added to the time embedding
    (guided-diffusion, EDM); the null row is what label dropout trains, so one network also models the union."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if labels is None:
            labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        return self.table(labels)


def time_mlp(dim: int, hidden: int, scale: float = 1000.0) -> nn.Sequential:
    return nn.Sequential(SinusoidalEmbedding(dim, scale), nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
