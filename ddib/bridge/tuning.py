"""Step grids tuned per model: where a fixed-step solve puts its σ̄ nodes, chosen to minimise its distance to a
converged solve on the model's own data (in the spirit of Align Your Steps, Sabour et al. 2024, and GITS, Chen et
al. 2024; here by direct search on the solve's error rather than a bound).

A grid is the N + 1 nodes σ̄_min = σ̄_0 < … < σ̄_N = σ̄_max, written through the positions u_i = log(σ̄_i/σ̄_min) /
log(σ̄_max/σ̄_min) ∈ [0, 1] of its interior nodes. Coordinate search moves one node at a time a fraction δ of the
way to a neighbour, keeps any move that lowers the error, and halves δ when a sweep finds none. The two
directions are tuned separately, because DDIB needs both: the encode grid on real images of the domain (error
in latent units, against the reference's latents), the decode grid on those latents and on N(0, I) draws (error
in 8-bit levels). The grid that is kept is the one with the lower error on held-out validation data, so tuning
never makes a model's validation error worse than the grid it started from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..model.diffusion import Diffusion
from . import ode
from .batching import in_batches
from .grids import sigma_grid

LEVELS = 127.5  # pixel errors in 8-bit levels: RMS over [-1, 1] × 127.5
DIRECTIONS = ("encode", "decode")


def grid_from_positions(model: Diffusion, u: list[float]) -> torch.Tensor:
    """σ̄ nodes (increasing, float64) from interior positions u_i ∈ (0, 1) in log σ̄."""
    sched = model.schedule
    pos = torch.tensor([0.0, *u, 1.0], dtype=torch.float64)
    grid = sched.sigma_min * (sched.sigma_max / sched.sigma_min) ** pos
    grid[0], grid[-1] = sched.sigma_min, sched.sigma_max
    return grid


def positions_of(model: Diffusion, grid: torch.Tensor) -> list[float]:
    sched = model.schedule
    return (torch.log(grid[1:-1].double() / sched.sigma_min) / math.log(sched.sigma_max / sched.sigma_min)).tolist()


def encode_on(model: Diffusion, x: torch.Tensor, grid: torch.Tensor, solver: str, batch_size: int = 64):
    """Latents of images x by `solver` stepping through `grid` (increasing σ̄)."""
    opts = ode.ODEOptions(solver, len(grid) - 1, tuned=False)
    return in_batches(lambda c: ode.encode(model, c, opts, grid=grid), x, batch_size).to(x.device)


def decode_on(model: Diffusion, z: torch.Tensor, grid: torch.Tensor, solver: str, batch_size: int = 64):
    """Images of latents z by `solver` stepping back through `grid` (given increasing)."""
    opts = ode.ODEOptions(solver, len(grid) - 1, tuned=False)
    return in_batches(lambda c: ode.decode(model, c, opts, grid=grid), z, batch_size).to(z.device)


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).pow(2).mean().sqrt().item()


def coordinate_search(
    loss: Callable[[list[float]], float],
    start: list[float],
    budget: int,
    delta: float = 0.5,
    min_delta: float = 1 / 64,
    on_eval: Callable[[int, float], None] | None = None,
) -> tuple[list[float], float, int]:
    """Minimise loss(u) over increasing u ∈ (0, 1)^k by one-node moves; returns (u, loss, evaluations)."""
    u, best = list(start), loss(start)
    evals = 1
    if on_eval:
        on_eval(evals, best)
    while evals < budget and delta >= min_delta:
        improved = False
        for i in range(len(u)):
            lo, hi = (u[i - 1] if i else 0.0), (u[i + 1] if i + 1 < len(u) else 1.0)
            for target in (lo, hi):
                if evals >= budget:
                    break
                trial = list(u)
                trial[i] = u[i] + delta * (target - u[i])
                value = loss(trial)
                evals += 1
                if on_eval:
                    on_eval(evals, min(best, value))
                if value < best:
                    u, best, improved = trial, value, True
                    break
        if not improved:
            delta /= 2
    return u, best, evals


@dataclass
class DirectionResult:
    """One direction's tuning: the grid kept, and the errors before and after (tuning and validation data)."""

    grid: list[float]
    kept: str  # "tuned" | "default" (tuning did not lower the validation error)
    tune_default: float
    tune_tuned: float
    val_default: float
    val_tuned: float
    evaluations: int


def tune_direction(
    model: Diffusion,
    start: torch.Tensor,
    error: Callable[[torch.Tensor, bool], float],
    budget: int,
    on_eval: Callable[[int, float], None] | None = None,
) -> DirectionResult:
    """Tune one direction's grid from `start`; error(grid, validation) is its error on tuning/validation data."""
    u, tuned_error, evals = coordinate_search(
        lambda v: error(grid_from_positions(model, v), False), positions_of(model, start), budget, on_eval=on_eval
    )
    tuned = grid_from_positions(model, u)
    val_default, val_tuned = error(start, True), error(tuned, True)
    keep_tuned = val_tuned < val_default
    return DirectionResult(
        grid=(tuned if keep_tuned else start).tolist(),
        kept="tuned" if keep_tuned else "default",
        tune_default=error(start, False),
        tune_tuned=tuned_error,
        val_default=val_default,
        val_tuned=val_tuned,
        evaluations=evals,
    )


@dataclass
class TuningData:
    """Images of the domain in [-1, 1] for tuning and for validation, and N(0, I) latents for each."""

    tune_images: torch.Tensor
    val_images: torch.Tensor
    tune_noise: torch.Tensor
    val_noise: torch.Tensor


def tune_solver(
    model: Diffusion,
    options: ode.ODEOptions,
    reference: ode.ODEOptions,
    data: TuningData,
    budget: int = 120,
    on_eval: Callable[[str, int, float], None] | None = None,
    directions: tuple[str, ...] = DIRECTIONS,
) -> dict:
    """Tune the grids of `model` for options.solver × options.steps in `directions` (a DDIB source only encodes,
    a target only decodes); the config.json entry, without the directions left untuned."""
    unknown = set(directions) - set(DIRECTIONS)
    if unknown or not directions:
        raise ValueError(f"directions must be among {DIRECTIONS}, got {directions}")
    untuned = ode.ODEOptions(options.solver, options.steps, rho=options.rho, tuned=False)
    start = sigma_grid(model, options.steps, untuned.rho, uniform_t=options.solver == "ddim")
    ref = ode.ODEOptions(reference.solver, reference.steps, reference.rtol, reference.atol, reference.rho, tuned=False)
    with torch.no_grad():
        ref_latents = {v: ode.encode(model, x, ref) for v, x in ((False, data.tune_images), (True, data.val_images))}
        latents = {v: torch.cat([ref_latents[v], n]) for v, n in ((False, data.tune_noise), (True, data.val_noise))}
        ref_images = {v: ode.decode(model, z, ref) for v, z in latents.items()} if "decode" in directions else {}

    def encode_error(grid: torch.Tensor, validation: bool) -> float:
        x = data.val_images if validation else data.tune_images
        return rms(encode_on(model, x, grid, options.solver), ref_latents[validation])

    def decode_error(grid: torch.Tensor, validation: bool) -> float:
        return LEVELS * rms(decode_on(model, latents[validation], grid, options.solver), ref_images[validation])

    results = {}
    errors = {"encode": encode_error, "decode": decode_error}
    for name in (d for d in DIRECTIONS if d in directions):
        error = errors[name]
        report = None if on_eval is None else (lambda k, v, name=name: on_eval(name, k, v))
        results[name] = tune_direction(model, start, error, budget, report)
    return {
        **{name: r.grid for name, r in results.items()},
        "reference": ref.describe(),
        "images": {
            "tune": len(data.tune_images),
            "validation": len(data.val_images),
            "noise": len(data.tune_noise),
        },  # fmt: skip
        "errors": {
            name: {**{k: v for k, v in vars(r).items() if k != "grid"}, "reference": ref.describe()}
            for name, r in results.items()
        },
        "units": {"encode": "latent RMS", "decode": "8-bit levels RMS"},
    }


def merge_entry(old: dict | None, new: dict) -> dict:
    """A config.json grid entry with `new`'s directions and `old`'s for the directions `new` did not tune."""
    if not old:
        return new
    kept = [d for d in DIRECTIONS if d in old and d not in new]
    merged = {**new, "errors": {**{d: old["errors"][d] for d in kept if d in old.get("errors", {})}, **new["errors"]}}
    merged.update({d: old[d] for d in kept})
    return merged
