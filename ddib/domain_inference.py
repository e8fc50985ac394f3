"""Which domain does an input come from? Compare its exact likelihood under every candidate model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .diffusion import Diffusion
from .likelihood import DEQUANT_BIN, dequantize, log_likelihood


@dataclass
class DomainScore:
    domain: str
    bits_per_dim: torch.Tensor  # (B,)
    stderr: torch.Tensor  # (B,)
    nfe: int


def score_images(
    models: dict[str, Diffusion],
    images_u8: torch.Tensor,
    probes: int = 4,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[DomainScore]:
    """Bits/dim of 8-bit images under each model; the same dequantisation noise and probes for every model."""
    x = dequantize(images_u8, torch.Generator().manual_seed(seed)).to(device)
    scores = []
    for name, model in models.items():
        res = log_likelihood(
            model, x, probes=probes, rtol=rtol, atol=atol, generator=torch.Generator().manual_seed(seed)
        )
        bpd, err = res.bits_per_dim(DEQUANT_BIN)
        scores.append(DomainScore(name, bpd.cpu(), err.cpu(), res.nfe))
    return scores


@dataclass
class Ranking:
    """Domains of one input, most likely first, with the margin between the first two in bits/dim."""

    order: list[tuple[str, float, float]]  # (domain, bits/dim, stderr)
    margin: float
    margin_stderr: float

    @property
    def best(self) -> str:
        return self.order[0][0]

    @property
    def decisive(self) -> bool:
        """The margin exceeds twice its standard error (or is positive when the estimate is exact)."""
        return self.margin > 2 * self.margin_stderr if self.margin_stderr > 0 else self.margin > 0


def rank(scores: list[DomainScore], i: int) -> Ranking:
    """Ranking for input i: lower bits/dim = more likely."""
    order = sorted(((s.domain, s.bits_per_dim[i].item(), s.stderr[i].item()) for s in scores), key=lambda r: r[1])
    if len(order) < 2:
        return Ranking(order, math.inf, 0.0)
    margin = order[1][1] - order[0][1]
    return Ranking(order, margin, math.hypot(order[0][2], order[1][2]))
