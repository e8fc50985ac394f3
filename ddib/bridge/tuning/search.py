"""Step grids tuned per model by search: where a fixed-step solve puts its σ̄ nodes, chosen to minimise its distance
to a converged solve on the model's own data (in the spirit of Align Your Steps, Sabour et al. 2024, and GITS, Chen
et al. 2024; here by direct search on the solve's error rather than a bound).

A grid is the N + 1 nodes σ̄_min = σ̄_0 < … < σ̄_N = σ̄_max, written through the positions u_i = log(σ̄_i/σ̄_min) /
log(σ̄_max/σ̄_min) ∈ [0, 1] of its interior nodes. Coordinate search moves one node at a time a fraction δ of the
way to a neighbour, keeps any move that lowers the error, and halves δ when a sweep finds none. The two
directions are tuned separately, because DDIB needs both: the encode grid on real images of the domain (error
in latent units, against the reference's latents), the decode grid on those latents and on N(0, I) draws (error
in 8-bit levels). The grid that is kept is the one with the lower error on held-out validation data, so tuning
never makes a model's validation error worse than the grid it started from. A solver that takes corrections then
has them fitted on the kept grid (`coefficients`), kept on the same condition.

Tuned for one bridge, each side sees what the translation feeds it: the target's decode grid is tuned on the
source's latents of source images, and the source's encode grid on the translation's error after the target's
converged decode (what the translation shows, rather than latent error along directions the target's decode
may ignore).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...evaluation.metrics import rms, rms_levels
from ...model.diffusion import Diffusion
from .. import ode
from ..grids import sigma_grid
from ..solvers import spec
from ..tuned import DIRECTIONS, ImageCounts, TunedDirection, TunedSolve, TuningErrors
from .coefficients import fit_corrections, refine_corrections
from .solves import TuningData, converged, converged_solves, decode_on, encode_on, untuned

SEED_RHOS = (7.0, 15.0, 30.0)  # EDM grid shapes tried before the node-by-node search


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


@dataclass(frozen=True)
class DirectionResult:
    """One direction's search: the grid kept, and the errors before and after (tuning and validation data)."""

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
    candidates: tuple[torch.Tensor, ...] = (),
) -> DirectionResult:
    """Tune one direction's grid from `start` (or from the best of `candidates` on the tuning data, such as other
    EDM ρ); error(grid, validation) is its error on tuning/validation data."""
    start_error = error(start, False)
    seed, seed_error = start, start_error
    for grid in candidates:  # a few whole-grid shapes first: node-by-node moves are slow to find a global reshaping
        value = error(grid, False)
        if value < seed_error:
            seed, seed_error = grid, value
    budget -= 1 + len(candidates)
    report = None if on_eval is None else (lambda k, value: on_eval(k + 1 + len(candidates), min(value, seed_error)))
    u, tuned_error, evals = coordinate_search(
        lambda v: error(grid_from_positions(model, v), False), positions_of(model, seed), max(1, budget),
        on_eval=report,
    )  # fmt: skip
    evals += 1 + len(candidates)
    tuned = grid_from_positions(model, u)
    val_default, val_tuned = error(start, True), error(tuned, True)
    keep_tuned = val_tuned < val_default
    return DirectionResult(
        grid=(tuned if keep_tuned else start).tolist(),
        kept="tuned" if keep_tuned else "default",
        tune_default=start_error,
        tune_tuned=tuned_error,
        val_default=val_default,
        val_tuned=val_tuned,
        evaluations=evals,
    )


def tune_solver(
    model: Diffusion,
    options: ode.ODEOptions,
    reference: ode.ODEOptions,
    data: TuningData,
    budget: int = 120,
    on_eval: Callable[[str, int, float], None] | None = None,
    directions: tuple[str, ...] = DIRECTIONS,
    coefficients: bool = True,
    source: Diffusion | None = None,
    target: Diffusion | None = None,
) -> TunedSolve:
    """Tune the grids of `model` for options.solver × options.steps in `directions` (a DDIB source only encodes,
    a target only decodes), then, for a solver that takes corrections (`unipc`) with `coefficients`, its per-step
    corrections on the kept grid; each kept only where it lowers the validation error. The entry holds only the
    directions tuned here.

    For one bridge: with `source`, the decode is tuned on the source's latents of `data`'s images (the source's
    domain) instead of the model's own; with `target`, the encode's error is measured after the target's converged
    decode (in levels), so latent errors the target's decode ignores cost nothing."""
    unknown = set(directions) - set(DIRECTIONS)
    if unknown or not directions:
        raise ValueError(f"directions must be among {DIRECTIONS}, got {directions}")
    if source is not None and "encode" in directions:
        raise ValueError("a source's latents tune the decode only: the encode runs on the model's own domain")
    solver_spec, plain, ref = spec(options.solver), untuned(options), converged(reference)
    start = sigma_grid(model, options.steps, plain.rho, uniform_t=solver_spec.uniform_t)
    alpha_0, alpha_1 = model.schedule.alpha_ends
    encoder = model if source is None else source
    converged_decode = None if target is None else (lambda z: decode_on(target, z, ref))
    ref_latents, latents, ref_images = converged_solves(model, encoder, data, ref, "decode" in directions)
    with torch.no_grad():
        ref_bridged = {} if converged_decode is None else {v: converged_decode(z) for v, z in ref_latents.items()}

    def encode_error(grid: torch.Tensor, validation: bool, corrections=None) -> float:
        x = data.val_images if validation else data.tune_images
        z = encode_on(model, x, plain, grid, corrections)
        if converged_decode is None:
            return rms(z, ref_latents[validation])
        return rms_levels(converged_decode(z), ref_bridged[validation])

    def decode_error(grid: torch.Tensor, validation: bool, corrections=None) -> float:
        decoded = decode_on(model, latents[validation], plain, grid, corrections)
        return rms_levels(decoded, ref_images[validation])

    # Other grid shapes to start the search from: EDM's ρ-grids, denser at low noise as ρ falls (none for a solver
    # whose grid is uniform in t: its start is its own grid, not a ρ).
    seeds = () if solver_spec.uniform_t else SEED_RHOS
    shapes = tuple(sigma_grid(model, options.steps, rho) for rho in seeds)
    # Where each direction starts, in DDIM coordinates and in solve order, for fitting the corrections.
    starts = {
        "encode": lambda: model.to_model_space(data.tune_images) / alpha_0,
        "decode": lambda: latents[False] / alpha_1,
    }
    # Each direction's whole solve on the tuning data as a function of its corrections, and where it should end.
    solvers = {
        "encode": lambda g: lambda c: encode_on(model, data.tune_images, plain, g, c),
        "decode": lambda g: lambda c: decode_on(model, latents[False], plain, g, c),
    }  # fmt: skip
    ends = {"encode": ref_latents[False], "decode": ref_images.get(False)}
    results, fits = {}, {}
    errors = {"encode": encode_error, "decode": decode_error}
    for name in (d for d in DIRECTIONS if d in directions):
        error = errors[name]
        report = None if on_eval is None else (lambda k, v, name=name: on_eval(name, k, v))
        results[name] = tune_direction(model, start, error, budget, report, shapes)
        if coefficients and solver_spec.corrections:
            grid = torch.tensor(results[name].grid, dtype=torch.float64)
            solve_order = grid if name == "encode" else grid.flip(0)
            fitted = fit_corrections(model, starts[name](), solve_order, step=solver_spec.step)
            fitted = refine_corrections(solvers[name](grid), ends[name], fitted)
            before = min(results[name].val_tuned, results[name].val_default)
            after = error(grid, True, fitted)
            fits[name] = (fitted, error(grid, False, fitted), after, after < before)
    units = {
        "encode": "latent RMS" if target is None else "8-bit levels RMS after the target's converged decode",
        "decode": "8-bit levels RMS" + ("" if source is None else " on the source's latents"),
    }  # fmt: skip
    parts = {}
    for name, r in results.items():
        fitted, tune_corrected, val_corrected, keep = fits.get(name, (None, None, None, False))
        measured = TuningErrors(
            r.kept, r.tune_default, r.tune_tuned, r.val_default, r.val_tuned, ref.describe(), units[name],
            evaluations=r.evaluations, tune_corrected=tune_corrected, val_corrected=val_corrected,
            corrections=None if fitted is None else "kept" if keep else "dropped",
        )  # fmt: skip
        parts[name] = TunedDirection.of(r.grid, fitted if keep else None, measured)
    counts = ImageCounts(len(data.tune_images), len(data.val_images), len(data.tune_noise))
    return TunedSolve(**parts, reference=ref.describe(), images=counts)
