"""Per-step corrections of a multistep solver (`solvers.corrected`) fitted by least squares: node by node onto a
converged trajectory, then all at once against the solve's end state (in the spirit of DPM-Solver-v3, Zheng et al.
2023). `gradient` fits them by gradient through the solver instead."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...model.diffusion import Diffusion
from ...utils import tf32_kernels
from .. import ode
from ..solvers import FixedStep, exponential_multistep_pc


@torch.no_grad()
def fit_corrections(model: Diffusion, x_bar: torch.Tensor, grid: torch.Tensor, substeps: int = 10,
                    ridge: float = 1e-6, step: FixedStep = exponential_multistep_pc) -> list[list[float]]:  # fmt: skip
    """Per-step coefficients of `step` (a solver that takes corrections, `unipc`'s by default) along its x̂0
    differences, fitted greedily: each step's result is moved, by least squares over all of x̄ (DDIM coordinates,
    grid in solve order), onto the converged trajectory's state at the next node (the same solver with every span
    cut into `substeps` log-uniform steps)."""
    drift = ode.pf_ode_drift(model, [0])
    grid = grid.to(device=x_bar.device, dtype=x_bar.dtype)
    states = [x_bar]
    with tf32_kernels(False):
        for lo, hi in zip(grid[:-1], grid[1:], strict=True):
            span = lo * (hi / lo) ** torch.linspace(0, 1, substeps + 1, dtype=grid.dtype, device=grid.device)
            states.append(step(drift, states[-1], span))
    coefficients: list[list[float]] = []

    def fit(i: int, x: torch.Tensor, differences: list[torch.Tensor]) -> torch.Tensor:
        if not differences:  # a one-step solve has no history to correct along
            coefficients.append([])
            return x
        a = torch.stack([d.flatten().double() for d in differences], dim=1)
        gram = a.T @ a
        gram = gram + ridge * torch.diag(gram.diagonal())  # relative ridge: near-collinear differences stay finite
        c = torch.linalg.solve(gram, a.T @ (states[i + 1] - x).flatten().double()).tolist()
        coefficients.append(c)
        return x + sum(ci * d for ci, d in zip(c, differences, strict=True))

    with tf32_kernels(False):
        step(drift, x_bar, grid, adjust=fit)
    return coefficients


@torch.no_grad()
def refine_corrections(
    solve: Callable[[list[list[float]]], torch.Tensor],
    reference: torch.Tensor,
    start: list[list[float]],
    iterations: int = 4,
    h: float = 1e-2,
    damping: float = 1e-3,
) -> list[list[float]]:
    """All per-step coefficients at once against the solve's end state: Levenberg–Marquardt with a finite-difference
    Jacobian (each column one whole solve), the end-to-end objective that node-wise fits miss where an early error
    is amplified. It starts from `start` or from no correction, whichever is closer, and takes only steps that lower
    the error."""
    sizes = [len(c) for c in start]
    flat = torch.tensor([v for c in start for v in c], dtype=torch.float64)

    def unflatten(v: torch.Tensor) -> list[list[float]]:
        parts = torch.split(v, sizes)
        return [p.tolist() for p in parts]

    def residual(v: torch.Tensor) -> torch.Tensor:
        return (solve(unflatten(v)).double() - reference.double()).flatten()

    if not len(flat):
        return start
    r, r_zero = residual(flat), residual(torch.zeros_like(flat))
    if r_zero.square().sum() < r.square().sum():  # a poor node-wise fit is no place to start from
        flat, r = torch.zeros_like(flat), r_zero
    best, lam = r.square().sum(), damping
    for _ in range(iterations):
        jac = torch.stack([(residual(flat + h * e) - r) / h for e in torch.eye(len(flat), dtype=flat.dtype)], dim=1)
        gram, grad = jac.T @ jac, jac.T @ r
        while lam < 1e6:
            step = torch.linalg.solve(gram + lam * torch.diag(gram.diagonal().clamp_min(1e-12)), -grad)
            trial = residual(flat + step)
            if trial.square().sum() < best:
                flat, r, best, lam = flat + step, trial, trial.square().sum(), lam / 3
                break
            lam *= 10
        else:
            break
    return unflatten(flat)
