"""Step grids: where a fixed-step solver evaluates the model, on the σ̄ axis.

Fixed-step solvers step on EDM's grid σ̄_i = (σ̄_min^{1/ρ} + i/N·(σ̄_max^{1/ρ} − σ̄_min^{1/ρ}))^ρ (Karras et al. 2022),
which spends steps where ε̂ changes fastest (low noise); ρ = ∞ is its limit, the grid uniform in log σ̄ (half the
log-SNR), as in DPM-Solver (Lu et al. 2022). DDIM's grid is σ̄(i/N), uniform in t (on a DDPM table, the nearest
integer timesteps, as DDIM's respacing of the official DDIB: at most T − 1 steps). Which grid a solver steps on by
default is in its spec (`solvers.SolverSpec`). A model may also carry grids tuned for it (`tuning`, kept as
`tuned.TunedSolve`), per solver, step count and direction.
"""

from __future__ import annotations

import math

import torch

from ..errors import DDIBError
from ..model.diffusion import Diffusion
from .tuned import stored

DEFAULT_RHO = 7.0


def grid_name(rho: float) -> str:
    return "log-SNR uniform" if math.isinf(rho) else f"EDM ρ={rho:g}"


def sigma_grid(model: Diffusion, steps: int, rho: float = DEFAULT_RHO, uniform_t: bool = False) -> torch.Tensor:
    """Increasing σ̄ grid from σ̄_min to σ̄_max: EDM's ρ-spaced grid (log-uniform for ρ = ∞), or σ̄(i/N) for the
    DDIM grid (float64)."""
    sched = model.schedule
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    if uniform_t:
        t = i * float(sched.t_of_sigma_bar(torch.tensor(sched.sigma_max, dtype=torch.float64)))
        if hasattr(sched, "num_timesteps"):  # a DDPM table: its own integer timesteps, as DDIM's respacing
            t = torch.unique(torch.round(t * (sched.num_timesteps - 1))) / (sched.num_timesteps - 1)
        grid = sched.sigma_bar(t)
    elif math.isinf(rho):
        grid = sched.sigma_min * (sched.sigma_max / sched.sigma_min) ** i
    else:
        lo, hi = sched.sigma_min ** (1 / rho), sched.sigma_max ** (1 / rho)
        grid = (lo + i * (hi - lo)) ** rho
    grid[0], grid[-1] = sched.sigma_min, sched.sigma_max  # exact endpoints despite rounding
    return grid


def tuned_grid(model: Diffusion, solver: str, steps: int, direction: str) -> torch.Tensor | None:
    """The model's tuned σ̄ grid (increasing, float64) for `solver` × `steps` and direction ("encode" or "decode")."""
    tuned = stored(model, solver, steps)
    part = None if tuned is None else tuned.direction(direction)
    return None if part is None else torch.tensor(part.grid, dtype=torch.float64)


def tuned_corrections(model: Diffusion, solver: str, steps: int, direction: str) -> list[list[float]] | None:
    """The model's tuned per-step solver corrections (`solvers.corrected`) for `solver` × `steps` and direction."""
    tuned = stored(model, solver, steps)
    part = None if tuned is None else tuned.direction(direction)
    corrections = None if part is None or part.corrections is None else [list(c) for c in part.corrections]
    if corrections is not None and len(corrections) != steps:
        raise DDIBError(f"the {direction} corrections of {model.grid_key(solver, steps)} have {len(corrections)} steps")
    return corrections
