"""The 2-D point domains of the DDIB paper (Su et al. 2023, §5.1), generated as the official code does.

Raw generators (before standardisation), as in `guided_diffusion/synthetic_datasets.py` of the official code:

- moons: scikit-learn's `make_moons(noise=0.05, shuffle=False)`, written out here: ⌊n/2⌋ points on the outer
  arc (cos t, sin t) and the rest on the inner arc (1 − cos t, 1 − sin t − 0.5), t = linspace(0, π) per arc,
  plus N(0, 0.05²) noise on both coordinates.
- checkerboards: x1 ~ U[−2, 2), x2 = U[0, 1) − 2·randint{0, 1} + (⌊x1⌋ mod 2): the 8 cells (i, j) of
  [−2, 2)² with i + j even (i = ⌊x1⌋, j = ⌊x2⌋).
- rings: circles of radius 1, 2, 3 around the origin, equal points per ring, angle ~ U[0, 2π), radius
  jittered by U(−0.25, 0.25) (ring width 0.5).
- squares: squares of half-side 1, 2, 3 around the origin, equal points per square and per edge, uniform
  along the edge; each point's square is scaled by (half-side + U(−0.25, 0.25)), i.e. width 0.5
  perpendicular to the edge (the official sampler multiplies the unit-square point by the jittered radius).
- olympic-rings / olympic-squares (the paper's "parallel" rings / squares): three unit rings (squares of
  half-side 1) centred at (−140, 0), (0, 0), (140, 0) for rings and (−150, 0), (0, 0), (150, 0) for squares,
  centres divided by 50, same width-0.5 jitter. The official code draws radius 1 ± 0.25 around centres
  already divided by 50, which is the same as radius 50 ± 12.5 around the undivided centres, all ÷ 50.

Standardisation (as the official `normalize`): ONE scalar mean and ONE scalar std over all coordinates,
x_model = (x − mean) / std; a scalar map keeps the shape (no per-axis stretch). The pair is recorded in the
model's config.json so that files in raw coordinates can be mapped in and out. Unlike the official loader,
points are shuffled (the generators emit them sorted by object and angle).

Everything is seeded: `make_points(name, n, seed)` returns the same tensor every time. `split="test"` draws
an independent set with the same seed (for evaluation: cycle consistency, plots).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import DDIBError

POINT_DOMAINS = ("moons", "checkerboards", "rings", "squares", "olympic-rings", "olympic-squares")
DEFAULT_TRAIN_POINTS = 300_000  # the official training set size
MOONS_NOISE = 0.05
WIDTH = 0.5  # ring / square width: radius + U(−WIDTH/2, WIDTH/2)
CONCENTRIC_RADII = (1.0, 2.0, 3.0)
OLYMPIC_RING_CENTERS = ((-140.0, 0.0), (0.0, 0.0), (140.0, 0.0))  # ÷ 50
OLYMPIC_SQUARE_CENTERS = ((-150.0, 0.0), (0.0, 0.0), (150.0, 0.0))  # ÷ 50
OLYMPIC_SCALE = 50.0
SPLITS = ("train", "test")

DESCRIPTIONS = {
    "moons": "two interleaving half circles, noise 0.05",
    "checkerboards": "4×4 checkerboard on [-2, 2]², 8 filled cells",
    "rings": "concentric rings of radius 1, 2, 3, width 0.5",
    "squares": "concentric squares of half-side 1, 2, 3, width 0.5",
    "olympic-rings": "three unit rings side by side, width 0.5",
    "olympic-squares": "three squares of half-side 1 side by side, width 0.5",
}


def check_point_domain(name: str) -> None:
    if name not in POINT_DOMAINS:
        raise DDIBError(f"unknown point domain {name!r}; choose one of {', '.join(POINT_DOMAINS)}")


def _split_counts(n: int, k: int) -> list[int]:
    """n items over k groups as evenly as possible (the first n mod k groups get one more)."""
    return [n // k + (i < n % k) for i in range(k)]


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    n_out = n // 2
    n_in = n - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5], axis=1)
    return np.concatenate([outer, inner]) + rng.normal(0.0, MOONS_NOISE, size=(n, 2))


def _checkerboards(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2
    x2 = x2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1)


def _jittered_radii(radii: tuple[float, ...], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(object index of each point, its jittered radius); equal points per object."""
    index = np.repeat(np.arange(len(radii)), _split_counts(n, len(radii)))
    radius = np.asarray(radii)[index] + (rng.random(n) - 0.5) * WIDTH
    return index, radius


def _rings(n: int, rng: np.random.Generator, radii, centers) -> np.ndarray:
    index, radius = _jittered_radii(radii, n, rng)
    theta = rng.random(n) * 2 * np.pi
    unit = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return unit * radius[:, None] + np.asarray(centers, dtype=np.float64)[index]


def _squares(n: int, rng: np.random.Generator, radii, centers) -> np.ndarray:
    index, radius = _jittered_radii(radii, n, rng)
    # Within each square, points go to the four edges in turn: equal points per edge (±1).
    first = np.concatenate([[0], np.cumsum(_split_counts(n, len(radii)))[:-1]])
    edge = (np.arange(n) - first[index]) % 4
    u = rng.random(n) * 2 - 1  # position along the edge, uniform in [-1, 1)
    ones = np.ones(n)
    x = np.select([edge == 0, edge == 1, edge == 2], [u, ones, u], -ones)
    y = np.select([edge == 0, edge == 1, edge == 2], [ones, u, -ones], u)
    unit = np.stack([x, y], axis=1)
    return unit * radius[:, None] + np.asarray(centers, dtype=np.float64)[index]


def _generate(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    origin3 = ((0.0, 0.0),) * 3
    if name == "moons":
        return _moons(n, rng)
    if name == "checkerboards":
        return _checkerboards(n, rng)
    if name == "rings":
        return _rings(n, rng, CONCENTRIC_RADII, origin3)
    if name == "squares":
        return _squares(n, rng, CONCENTRIC_RADII, origin3)
    if name == "olympic-rings":
        return _rings(n, rng, (1.0,) * 3, np.asarray(OLYMPIC_RING_CENTERS) / OLYMPIC_SCALE)
    if name == "olympic-squares":
        return _squares(n, rng, (1.0,) * 3, np.asarray(OLYMPIC_SQUARE_CENTERS) / OLYMPIC_SCALE)
    check_point_domain(name)
    raise AssertionError(name)  # pragma: no cover


def raw_points(name: str, n: int, seed: int = 0, split: str = "train") -> np.ndarray:
    """n points of a domain in raw coordinates (float64, (n, 2)), shuffled; deterministic in (seed, split)."""
    check_point_domain(name)
    if split not in SPLITS:
        raise DDIBError(f"unknown split {split!r}")
    if not (isinstance(n, int) and n >= 1):
        raise DDIBError(f"the number of points must be a positive integer, got {n}")
    rng = np.random.default_rng([int(seed) % 2**63, SPLITS.index(split)])
    points = _generate(name, n, rng)
    return points[rng.permutation(n)]


def standardize(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(points − mean) / std with ONE scalar mean and std over all coordinates (the official `normalize`)."""
    mean, std = float(points.mean()), float(points.std())
    if not (math.isfinite(std) and std > 0):
        raise DDIBError("cannot standardise a point set with zero spread")
    return (points - mean) / std, mean, std


def make_points(name: str, n: int, seed: int = 0, split: str = "train") -> tuple[torch.Tensor, float, float]:
    """(standardised float32 tensor (n, 2), mean, std) of a built-in point domain, shuffled and seeded."""
    points, mean, std = standardize(raw_points(name, n, seed, split))
    return torch.from_numpy(points.astype(np.float32)), mean, std
