"""Percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13): resample the images with replacement, recompute
the statistic, and take the middle 95% of its resampled values; seeded, so an interval is reproducible."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .metrics import frechet_distance

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic's value on all the images and its bootstrap interval [low, high]."""

    value: float
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def overlaps(self, other: Estimate) -> bool:
        return self.low <= other.high and other.low <= self.high

    def to_json(self) -> list[float]:
        return [self.value, self.low, self.high]

    @classmethod
    def from_json(cls, raw: list[float] | None) -> Estimate | None:
        return None if raw is None else cls(*map(float, raw))


def resamples(n: int, count: int = RESAMPLES, seed: int = 0) -> torch.Tensor:
    """(count, n) indices of `count` resamples of n items with replacement, the same for every statistic of a seed
    (so intervals of two rows over the same images are paired)."""
    return torch.randint(n, (count, n), generator=torch.Generator().manual_seed(seed))


def percentile(value: float, resampled: torch.Tensor, level: float = LEVEL) -> Estimate:
    """The value with the (1 − level)/2 and (1 + level)/2 quantiles of its resampled values."""
    tail = (1 - level) / 2
    low, high = torch.quantile(resampled.double(), torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Estimate(float(value), low, high)


def mean(values: torch.Tensor, indices: torch.Tensor) -> Estimate:
    """The mean of per-image values (a share, for 0/1 values)."""
    values = values.double()
    return percentile(values.mean().item(), values[indices].mean(1))


def quantile(values: torch.Tensor, q: float, indices: torch.Tensor) -> Estimate:
    """The q-quantile of per-image values (the median hue error: q = 0.5)."""
    values = values.double()
    return percentile(values.quantile(q).item(), values[indices].quantile(q, dim=1))


def root_mean(squares: torch.Tensor, indices: torch.Tensor) -> Estimate:
    """√(mean of per-image mean squares): an RMS over every pixel of every image."""
    squares = squares.double()
    return percentile(squares.mean().sqrt().item(), squares[indices].mean(1).sqrt())


def frechet(features: torch.Tensor, reference: torch.Tensor, indices: torch.Tensor) -> Estimate:
    """FD of the images' features to fixed reference features, the images resampled and the reference kept.

    A resample repeats images, which shrinks its spread and raises its FD above the value's; the interval is
    shifted back by the resamples' mean excess (bias-corrected percentile), so it describes the value's spread
    around the value rather than the resamples' bias."""
    value = frechet_distance(features, reference)
    resampled = torch.tensor([frechet_distance(features[i], reference) for i in indices], dtype=torch.float64)
    return percentile(value, resampled - (resampled.mean() - value))
