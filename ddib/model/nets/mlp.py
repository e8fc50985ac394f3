"""Residual MLP ε-network for 2-D point domains (the DDIB paper's synthetic model: width 256, 3 blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MLPConfig
from .embedding import LabelEmbedding, time_mlp


class MLPBlock(nn.Module):
    """h = x + W2 act(W1 act(LN(x)) + emb(t))."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.fc1(F.silu(self.norm(x))) + self.emb(emb)
        return x + self.fc2(F.silu(h))


class ResidualMLP(nn.Module):
    """ε̂ = MLP(x_t, t) for points in R^dim."""

    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.config = cfg
        self.time_embed = time_mlp(cfg.width, cfg.width, cfg.time_scale)
        self.label_embed = LabelEmbedding(cfg.num_classes, cfg.width) if cfg.num_classes else None
        self.inp = nn.Linear(cfg.dim, cfg.width)
        self.blocks = nn.ModuleList(MLPBlock(cfg.width) for _ in range(cfg.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(cfg.width), nn.SiLU(), nn.Linear(cfg.width, cfg.dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # An ODE step evaluates one noise level for the whole batch: embed it once and let the blocks
        # broadcast it (less work per evaluation than embedding every row).
        same_t = t.ndim == 1 and t.shape[0] > 1 and bool((t == t[0]).all())
        emb = self.time_embed(t[:1] if same_t else t)
        if self.label_embed is not None:
            emb = emb + self.label_embed(labels, x.shape[0], x.device)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
