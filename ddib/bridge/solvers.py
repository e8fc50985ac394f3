"""Integrators of the probability-flow ODE dx̄/dσ̄ = f(σ̄, x̄) (see `ode.py`).

Every fixed-step solver is a plain function (drift, x̄, grid) → x̄ at grid[-1] that steps through every node of
the σ̄ grid it is given; the grid's order is the direction (increasing: encode, decreasing: decode).

- `ddim` is Euler on the uniform-in-t grid, i.e. the deterministic DDIM sampler of the official DDIB code; `euler`,
  `midpoint`, `heun2`, `heun3`, `rk4` are torchdiffeq's fixed-grid Runge–Kutta methods.
- `dpm2m` is the multistep DPM-Solver++(2M) (Lu et al. 2022b): exact for a constant x̂0 = x̄ − σ̄·ε̂, with x̂0
  extrapolated linearly in log σ̄ from the previous step, one evaluation per step.
- `unipc` is `exponential_multistep_pc`: a third-order exponential multistep predictor with a fourth-order corrector
  in the manner of UniPC (Zhao et al. 2023). The predictor integrates, exactly against the exponential, the
  quadratic through the last three x̂0 (DPM-Solver++(3M)); the corrector redoes the step with the cubic that also
  passes through x̂0 at the predicted point, an evaluation the next step needs anyway, so the order rises by one at
  no cost, at one evaluation per step (the last step, whose evaluation nothing would reuse, is not corrected).
  Its per-step coefficients can be tuned to one model (`corrected`, fitted in `tuning`).

Adaptive solvers are torchdiffeq's, through `adaptive_odeint`.

Each solver is one `SolverSpec` in `SOLVERS`: how it steps, what a step costs, the grid it steps on by default, and
which tuning applies. Callers ask the table (`spec`) rather than test names, so adding a solver is one function and
one spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import DDIBError
from .grids import DEFAULT_RHO

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Adjust = Callable[[int, torch.Tensor, list[torch.Tensor]], torch.Tensor]
FixedStep = Callable[..., torch.Tensor]  # (drift, x̄, grid[, adjust=]) → x̄ at grid[-1]


def runge_kutta(method: str) -> Callable[[Drift, torch.Tensor, torch.Tensor], torch.Tensor]:
    """torchdiffeq's fixed-grid `method` as a plain (drift, x̄, grid) → x̄ function."""

    def integrate(drift: Drift, x_bar: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        # For a decreasing grid torchdiffeq negates time and our constructor's output alike.
        options = {"grid_constructor": lambda f, y, t: grid}
        return _odeint()(drift, x_bar, grid[[0, -1]], method=method, options=options)[-1]

    return integrate


def dpm_solver_2m(drift, x_bar: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++(2M) over the σ̄ grid: x̄_t = (t/s)·x̄_s + (1 − t/s)·D, D = x̂0_s + (x̂0_s − x̂0_prev)/(2·h_prev/h)."""
    x0_prev, h_prev = None, None
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        x0 = x_bar - s * drift(s, x_bar)
        h = torch.log(s / t)  # step in λ = −log σ̄; negative while encoding
        d = x0 if x0_prev is None else x0 + (x0 - x0_prev) * (h / (2 * h_prev))
        x_bar = (t / s) * x_bar + (1 - t / s) * d
        x0_prev, h_prev = x0, h
    return x_bar


def _exp_integral_weights(taus: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """w_j with Σ_j w_j·m_j = ∫_0^h e^{−(h−τ)} p(τ) dτ, p the polynomial through (τ_j, m_j): exact φ-functions."""
    # Moments I_k = ∫_0^h e^{−(h−τ)} τ^k dτ by parts: I_0 = 1 − e^{−h}, I_k = h^k − k·I_{k−1}; |h| ≲ 1 here.
    moments = [-torch.expm1(-h)]
    for k in range(1, len(taus)):
        moments.append(h**k - k * moments[-1])
    vandermonde = torch.stack([taus**k for k in range(len(taus))], dim=1)
    return torch.linalg.solve(vandermonde.T, torch.stack(moments))


def exponential_multistep_pc(drift, x_bar: torch.Tensor, grid: torch.Tensor, order: int = 3,
                             adjust: Adjust | None = None) -> torch.Tensor:  # fmt: skip
    """Exponential multistep predictor (order `order`) + corrector (order + 1) on x̂0 = x̄ − σ̄·ε̂ in λ = −log σ̄:
    x̄_t = e^{−h}·x̄_s + ∫_0^h e^{−(h−τ)} x̂0(λ_s + τ) dτ with x̂0 interpolated (DPM-Solver++, Lu et al. 2022b; UniC,
    Zhao et al. 2023). `adjust(i, x̄, differences)` may move each step's result along the step's x̂0 differences
    (newest first), the directions a multistep method's coefficients span (`corrected`)."""
    # The coefficients in float64 on the CPU, and differentiable in the grid: `learned_solver` fits grids by gradient.
    lam = -torch.log(grid.to("cpu", torch.float64))
    nodes = grid.to(x_bar.device, x_bar.dtype)  # where the network is evaluated
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (λ, x̂0) of the latest evaluations, newest last
    n = len(grid) - 1

    def step(x_from: torch.Tensor, i: int, points: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        h = lam[i + 1] - lam[i]
        weights = _exp_integral_weights(torch.stack([lam_j - lam[i] for lam_j, _ in points]), h)
        return torch.exp(-h).to(x_from.dtype) * x_from + sum(
            w.to(m.dtype) * m for w, (_, m) in zip(weights, points, strict=True)
        )

    def adjusted(i: int, x: torch.Tensor, used: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
        if adjust is None:
            return x
        return adjust(i, x, [a - b for (_, a), (_, b) in zip(used[:-1], used[1:], strict=True)])

    for i in range(n):
        if not history:  # the first step; later ones reuse the corrector's evaluation
            history.append((lam[i], x_bar - nodes[i] * drift(nodes[i], x_bar)))
        history = history[-order:]
        predicted = step(x_bar, i, history[::-1])
        if i == n - 1:
            return adjusted(i, predicted, history[::-1])
        x0_next = predicted - nodes[i + 1] * drift(nodes[i + 1], predicted)
        # The corrected state continues the solve; x̂0 stays the one evaluated at the predicted state, as in UniPC.
        used = [(lam[i + 1], x0_next)] + history[::-1]
        x_bar = adjusted(i, step(x_bar, i, used), used)
        history.append((lam[i + 1], x0_next))
    return x_bar


def corrected(coefficients: list[list[float]] | list[torch.Tensor]) -> Adjust:
    """adjust(i, x̄, d) = x̄ + Σ_k c_ik·d_k: learned per-step corrections of a multistep solver along its x̂0
    differences (in the spirit of DPM-Solver-v3, Zheng et al. 2023, and S4S, Frankel et al. 2025)."""

    def adjust(i: int, x: torch.Tensor, differences: list[torch.Tensor]) -> torch.Tensor:
        return x + sum(torch.as_tensor(c).to(d.dtype) * d for c, d in zip(coefficients[i], differences, strict=True))

    return adjust


# `ddib tune-solver --method`s: node-by-node grid search (then, where a solver takes them, least-squares
# corrections), or nodes and corrections together by gradient through the solver (`learned_solver`).
SEARCH, GRADIENT = "search", "gradient"
TUNING_METHODS = (GRADIENT, SEARCH)


@dataclass(frozen=True)
class SolverSpec:
    """Everything the package knows about one solver; `SOLVERS` is the only place a solver's name is looked up."""

    name: str
    step: FixedStep | None  # (drift, x̄, grid) → x̄ through every node; None: torchdiffeq's adaptive method `name`
    order: int  # order of accuracy (a predictor–corrector's: its predictor's)
    evals_per_step: int = 1  # network evaluations per step (fixed-step solvers)
    rho: float = DEFAULT_RHO  # its default grid: EDM's ρ-spaced one (`grids.sigma_grid`); math.inf: log-SNR uniform
    uniform_t: bool = False  # steps on σ̄(i/N) instead, uniform in t (DDIM's grid), whatever ρ
    corrections: bool = False  # `step` takes adjust=…: per-step corrections along its x̂0 differences (`corrected`)
    tuning: tuple[str, ...] = ()  # the tuning methods that apply (`TUNING_METHODS`), its default first

    @property
    def fixed(self) -> bool:
        return self.step is not None


SOLVERS: dict[str, SolverSpec] = {
    s.name: s
    for s in (
        SolverSpec("euler", runge_kutta("euler"), order=1, tuning=(SEARCH,)),
        SolverSpec("ddim", runge_kutta("euler"), order=1, uniform_t=True, tuning=(SEARCH,)),
        # Exponential integrators step in spans of λ = −log σ̄: by default on the grid uniform in it.
        SolverSpec("dpm2m", dpm_solver_2m, order=2, rho=math.inf, tuning=(SEARCH,)),
        SolverSpec("unipc", exponential_multistep_pc, order=3, rho=math.inf, corrections=True,
                   tuning=(GRADIENT, SEARCH)),
        SolverSpec("midpoint", runge_kutta("midpoint"), order=2, evals_per_step=2, tuning=(SEARCH,)),
        SolverSpec("heun2", runge_kutta("heun2"), order=2, evals_per_step=2, tuning=(SEARCH,)),
        SolverSpec("heun3", runge_kutta("heun3"), order=3, evals_per_step=3, tuning=(SEARCH,)),
        SolverSpec("rk4", runge_kutta("rk4"), order=4, evals_per_step=4, tuning=(SEARCH,)),
        SolverSpec("dopri5", None, order=5),
        SolverSpec("bosh3", None, order=3),
        SolverSpec("adaptive_heun", None, order=2),
        SolverSpec("fehlberg2", None, order=2),
        SolverSpec("dopri8", None, order=8),
    )
}  # fmt: skip


def spec(name: str) -> SolverSpec:
    """The solver called `name`."""
    if name not in SOLVERS:
        raise DDIBError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[name]


def solvers_with(method: str) -> list[str]:
    """The solvers a tuning method applies to."""
    return [name for name, s in SOLVERS.items() if method in s.tuning]


# Views of the table by kind, for option help and membership tests.
FIXED_SOLVERS: dict[str, FixedStep] = {name: s.step for name, s in SOLVERS.items() if s.fixed}
EVALS_PER_STEP: dict[str, int] = {name: s.evals_per_step for name, s in SOLVERS.items() if s.fixed}
ADAPTIVE_SOLVERS: tuple[str, ...] = tuple(name for name, s in SOLVERS.items() if not s.fixed)


def per_sample_rms_max(err: torch.Tensor) -> torch.Tensor:
    # Adaptive step control over a batch: every sample must meet the tolerance, so take the worst one.
    if err.ndim <= 1:
        return err.pow(2).mean().sqrt()
    return err.pow(2).flatten(1).mean(1).sqrt().max()


def _odeint():
    from torchdiffeq import odeint  # here: it imports scipy, which would slow every command's start

    return odeint


def adaptive_odeint(f, y0, span: torch.Tensor, solver: str, rtol: float, atol: float, norm):
    """torchdiffeq's adaptive odeint over `span`, never evaluating f outside it, with a step-size underflow
    (tolerance below what the dtype resolves) as a DDIBError rather than torchdiffeq's assertion."""
    # torchdiffeq steps past the last time and interpolates back; here that would query the network at σ̄ < σ̄_min
    # (where the log-SNR embedding is NaN, or the model extrapolates) or beyond σ̄_max. step_t makes the last step
    # end exactly at the end of the span.
    options = {"norm": norm, "step_t": span[-1:]}
    try:
        return _odeint()(f, y0, span, method=solver, rtol=rtol, atol=atol, options=options)
    except AssertionError as err:
        if "underflow" not in str(err):
            raise
        raise DDIBError(
            f"{solver} (rtol={rtol:g}, atol={atol:g}) could not meet its tolerance in {span.dtype} (the step size "
            "underflowed): loosen --rtol/--atol or use a fixed-step solver"
        ) from None
