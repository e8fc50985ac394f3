"""Translation metrics: errors in 8-bit levels, digit read-out, hue preservation, cycle error, Fréchet distance on
classifier features."""

from __future__ import annotations

import math

import torch

from ..color import digit_hue, hue_difference

LEVELS = 127.5  # pixel errors in 8-bit levels: [-1, 1] pixels × 127.5 (1.0 = 1/255 of the range)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """FD = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}) (Heusel et al. 2017), in float64."""
    a, b = feats_a.double(), feats_b.double()
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a Fréchet distance needs at least two samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    evals, evecs = torch.linalg.eigh(cov_a)
    sqrt_a = evecs @ torch.diag(evals.clamp_min(0).sqrt()) @ evecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt
    return max(0.0, fd.item())


def hue_errors(sources: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Per-image circular hue difference (degrees) between source and output digits; 180 where either has none."""
    h_src, _ = digit_hue(sources)
    h_out, _ = digit_hue(outputs)
    err = hue_difference(h_src, h_out)
    return torch.where(torch.isnan(err), torch.full_like(err, 180.0), err)


def quantile(values: torch.Tensor, q: float) -> float:
    return values.float().quantile(q).item() if len(values) else math.nan


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean square difference in float64, in the inputs' own units."""
    return (a.double() - b.double()).pow(2).mean().sqrt().item()


def rms_levels(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean square difference of [-1, 1] images in 8-bit levels."""
    return LEVELS * rms(a, b)


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean square difference over all pixels and images."""
    return (a.float() - b.float()).pow(2).mean().sqrt().item()
