"""The DDIB bridge: probability-flow ODE encode/decode as plain functions over a `Diffusion` model.

The probability-flow ODE of a VP diffusion (Song et al. 2021) is solved in the DDIM coordinates
(Song et al. 2021a; Karras et al. 2022): state x̄ = x/α, independent variable σ̄ = σ/α, where it reads

    dx̄/dσ̄ = ε̂(α(σ̄)·x̄, t(σ̄)),    α(σ̄) = 1/√(1 + σ̄²).

In these coordinates the ODE is nearly linear in σ̄ (exactly so where ε̂ is constant), so one Euler step
there *is* the deterministic DDIM update, and higher-order solvers gain the most from each evaluation.
Fixed-step solvers step on the EDM time grid σ̄_i = (σ̄_min^{1/ρ} + i/N·(σ̄_max^{1/ρ} − σ̄_min^{1/ρ}))^ρ
with ρ = 7 (Karras et al. 2022), which spends steps where ε̂ changes fastest (low noise); ρ = ∞ is its limit,
the grid uniform in log σ̄ (half the log-SNR), as in DPM-Solver (Lu et al. 2022). The `ddim` solver is Euler
on the uniform-in-t grid, i.e. the deterministic DDIM sampler of the official DDIB code. `dpm2m` is the
multistep DPM-Solver++(2M) (Lu et al. 2022b): exact for a constant x̂0 = x̄ − σ̄·ε̂, with x̂0 extrapolated
linearly in log σ̄ from the previous step, one evaluation per step, in either direction. `unipc` is a third-order
exponential multistep predictor–corrector in the manner of UniPC (Zhao et al. 2023): the predictor integrates, exactly
against the exponential, the quadratic through the last three x̂0 (DPM-Solver++(3M)); the corrector redoes the step with
the cubic that also passes through x̂0 at the predicted point, an evaluation the next step needs anyway, so the
order rises by one at no cost (UniPC's analysis; tested ≥ third order) at one evaluation per step (the last step,
whose evaluation nothing would reuse, is not corrected).
`dpm2m` and `unipc` default to the log-SNR grid, on which they were measured best; the others to EDM's ρ = 7.

encode:    z = ODESolve(x; source, t 0 → 1)        (DDIB eq. 5)
decode:    x = ODESolve(z; target, t 1 → 0)
translate: decode(target, encode(source, x))       (DDIB Algorithm 1)

Nothing is clipped on the way: clipping x̂0 would make encoding non-invertible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torchdiffeq import odeint

from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..utils import tf32_kernels

# Network evaluations per step of each fixed-grid solver.
FIXED_SOLVERS = {"euler": 1, "ddim": 1, "dpm2m": 1, "unipc": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
ADAPTIVE_SOLVERS = ("dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8")
SOLVERS = tuple(FIXED_SOLVERS) + ADAPTIVE_SOLVERS

# Defaults chosen from `ddib bench translate` (see README, "Choosing the default solver").
DEFAULT_SOLVER = "unipc"
DEFAULT_STEPS = 20
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4
DEFAULT_RHO = 7.0
# Solvers whose default grid is uniform in log-SNR: exponential integrators, whose steps are spans of λ = −log σ̄.
LOG_SNR_SOLVERS = ("dpm2m", "unipc")


def default_rho(solver: str) -> float:
    """The grid a solver steps on unless told otherwise (measured in `ddib bench translate`)."""
    return math.inf if solver in LOG_SNR_SOLVERS else DEFAULT_RHO


@dataclass(frozen=True)
class ODEOptions:
    """How to solve the probability-flow ODE: method, fixed-step budget, adaptive tolerances, grid shape."""

    solver: str = DEFAULT_SOLVER
    steps: int = DEFAULT_STEPS
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    rho: float | None = None  # None: the solver's default grid (`default_rho`)
    tuned: bool = True  # use a model's tuned grid for this solver and step count when it has one (`tuned_grid`)

    def __post_init__(self):
        if self.rho is None:
            object.__setattr__(self, "rho", default_rho(self.solver))
        if self.solver not in SOLVERS:
            raise DDIBError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.is_fixed and not (isinstance(self.steps, int) and self.steps >= 1):
            raise DDIBError(f"--steps must be a positive integer, got {self.steps}")
        if not (self.rtol > 0 and self.atol > 0):
            raise DDIBError("--rtol and --atol must be positive")
        if not self.rho > 0:
            raise DDIBError("rho must be positive")

    @property
    def is_fixed(self) -> bool:
        return self.solver in FIXED_SOLVERS

    def describe(self) -> str:
        if self.is_fixed:
            grid = (
                "" if self.rho == default_rho(self.solver) or self.solver == "ddim" else f", {grid_name(self.rho)} grid"
            )
            return f"{self.solver} × {self.steps} steps{grid}"
        return f"{self.solver} (rtol={self.rtol:g}, atol={self.atol:g})"


@dataclass
class SolveStats:
    """Counts the network evaluations (NFE) of every solve; one evaluation covers a whole batch."""

    nfe: int = 0
    solves: int = 0
    per_solve: list[int] = field(default_factory=list)

    def add(self, nfe: int) -> None:
        self.nfe += nfe
        self.solves += 1
        self.per_solve.append(nfe)


def grid_name(rho: float) -> str:
    return "log-SNR uniform" if math.isinf(rho) else f"EDM ρ={rho:g}"


def sigma_grid(model: Diffusion, steps: int, rho: float = DEFAULT_RHO, uniform_t: bool = False) -> torch.Tensor:
    """Increasing σ̄ grid from σ̄_min to σ̄_max: EDM's ρ-spaced grid (log-uniform for ρ = ∞), or σ̄(i/N) for the
    DDIM grid (float64)."""
    sched = model.schedule
    i = torch.arange(steps + 1, dtype=torch.float64) / steps
    if uniform_t:
        grid = sched.sigma_bar(i)
    elif math.isinf(rho):
        grid = sched.sigma_min * (sched.sigma_max / sched.sigma_min) ** i
    else:
        lo, hi = sched.sigma_min ** (1 / rho), sched.sigma_max ** (1 / rho)
        grid = (lo + i * (hi - lo)) ** rho
    grid[0], grid[-1] = sched.sigma_min, sched.sigma_max  # exact endpoints despite rounding
    return grid


def pf_ode_drift(model: Diffusion, counter: list[int]):
    """f(σ̄, x̄) = dx̄/dσ̄ = ε̂(α(σ̄)·x̄, t(σ̄)), the probability-flow ODE in DDIM coordinates."""
    sched = model.schedule

    def drift(sigma_bar: torch.Tensor, x_bar: torch.Tensor) -> torch.Tensor:
        counter[0] += 1
        alpha = torch.rsqrt(1 + sigma_bar**2)
        return model.eps(x_bar * alpha, sched.t_of_sigma_bar(sigma_bar))

    return drift


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


def _exp_integral_weights(taus: list[float], h: float) -> list[float]:
    """w_j with Σ_j w_j·m_j = ∫_0^h e^{−(h−τ)} p(τ) dτ, p the polynomial through (τ_j, m_j): exact φ-functions."""
    # Moments I_k = ∫_0^h e^{−(h−τ)} τ^k dτ by parts: I_0 = 1 − e^{−h}, I_k = h^k − k·I_{k−1}; |h| ≲ 1 here.
    moments = [-math.expm1(-h)]
    for k in range(1, len(taus)):
        moments.append(h**k - k * moments[-1])
    vandermonde = torch.tensor([[tau**k for k in range(len(taus))] for tau in taus], dtype=torch.float64)
    return (torch.tensor(moments, dtype=torch.float64) @ torch.linalg.inv(vandermonde)).tolist()


def unipc(drift, x_bar: torch.Tensor, grid: torch.Tensor, order: int = 3) -> torch.Tensor:
    """Exponential multistep predictor (order `order`) + corrector (order + 1) on x̂0 = x̄ − σ̄·ε̂ in λ = −log σ̄:
    x̄_t = e^{−h}·x̄_s + ∫_0^h e^{−(h−τ)} x̂0(λ_s + τ) dτ with x̂0 interpolated (DPM-Solver++, Lu et al. 2022b; UniC,
    Zhao et al. 2023)."""
    sigmas = grid.tolist()
    lam = [-math.log(s) for s in sigmas]
    history: list[tuple[float, torch.Tensor]] = []  # (λ, x̂0) of the latest evaluations, newest last
    n = len(sigmas) - 1

    def step(x_from: torch.Tensor, i: int, points: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
        h = lam[i + 1] - lam[i]
        weights = _exp_integral_weights([lam_j - lam[i] for lam_j, _ in points], h)
        return math.exp(-h) * x_from + sum(w * m for w, (_, m) in zip(weights, points, strict=True))

    for i in range(n):
        if not history or history[-1][0] != lam[i]:  # the first step; later ones reuse the corrector's evaluation
            history.append((lam[i], x_bar - sigmas[i] * drift(grid[i], x_bar)))
        history = history[-order:]
        predicted = step(x_bar, i, history[::-1])
        if i == n - 1:
            return predicted
        x0_next = predicted - sigmas[i + 1] * drift(grid[i + 1], predicted)
        # The corrected state continues the solve; x̂0 stays the one evaluated at the predicted state, as in UniPC.
        x_bar = step(x_bar, i, [(lam[i + 1], x0_next)] + history[::-1])
        history.append((lam[i + 1], x0_next))
    return x_bar


def _per_sample_rms_max(err: torch.Tensor) -> torch.Tensor:
    # Adaptive step control over a batch: every sample must meet the tolerance, so take the worst one.
    if err.ndim <= 1:
        return err.pow(2).mean().sqrt()
    return err.pow(2).flatten(1).mean(1).sqrt().max()


def adaptive_odeint(f, y0, span: torch.Tensor, solver: str, rtol: float, atol: float, norm):
    """torchdiffeq's adaptive odeint over `span`, never evaluating f outside it, with a step-size underflow
    (tolerance below what the dtype resolves) as a DDIBError rather than torchdiffeq's assertion."""
    # torchdiffeq steps past the last time and interpolates back; here that would query the network at σ̄ < σ̄_min
    # (where the log-SNR embedding is NaN, or the model extrapolates) or beyond σ̄_max. step_t makes the last step
    # end exactly at the end of the span.
    options = {"norm": norm, "step_t": span[-1:]}
    try:
        return odeint(f, y0, span, method=solver, rtol=rtol, atol=atol, options=options)
    except AssertionError as err:
        if "underflow" not in str(err):
            raise
        raise DDIBError(
            f"{solver} (rtol={rtol:g}, atol={atol:g}) could not meet its tolerance in {span.dtype} (the step size "
            "underflowed): loosen --rtol/--atol or use a fixed-step solver"
        ) from None


@torch.no_grad()
def solve(
    model: Diffusion,
    x_bar: torch.Tensor,
    encode_direction: bool,
    options: ODEOptions = ODEOptions(),
    stats: SolveStats | None = None,
) -> torch.Tensor:
    """Integrate dx̄/dσ̄ from σ̄_min to σ̄_max (encode) or back (decode) with `options`."""
    counter = [0]
    with tf32_kernels(False):  # full fp32 kernels: a solve must not depend on the GPU's default precision
        out = _solve(pf_ode_drift(model, counter), model, x_bar, encode_direction, options)
    if stats is not None:
        stats.add(counter[0])
    return out


def tuned_grid(model: Diffusion, options: ODEOptions, encode_direction: bool) -> torch.Tensor | None:
    """The model's tuned σ̄ grid (increasing, float64) for this solver, step count and direction, if it has one."""
    if not (options.tuned and options.is_fixed):
        return None
    entry = model.solver_grids.get(model.grid_key(options.solver, options.steps))
    nodes = None if entry is None else entry.get("encode" if encode_direction else "decode")
    return None if nodes is None else torch.tensor(nodes, dtype=torch.float64)


def uses_tuned_grid(options: ODEOptions, *models: Diffusion) -> bool:
    """Whether any of the models solves with a tuned grid under `options` (for summaries)."""
    return any(tuned_grid(m, options, d) is not None for m in models for d in (True, False))


def describe_solve(options: ODEOptions, *models: Diffusion) -> str:
    """'unipc × 10 steps', with ', tuned grid' when one of the models solves on its tuned grid."""
    return options.describe() + (", tuned grid" if uses_tuned_grid(options, *models) else "")


def _solve(drift, model: Diffusion, x_bar: torch.Tensor, encode_direction: bool, options: ODEOptions) -> torch.Tensor:
    if options.is_fixed:
        grid = tuned_grid(model, options, encode_direction)
        if grid is None:
            grid = sigma_grid(model, options.steps, options.rho, uniform_t=options.solver == "ddim")
        return integrate_fixed(drift, x_bar, grid if encode_direction else grid.flip(0), options.solver)
    sched = model.schedule
    span = torch.tensor([sched.sigma_min, sched.sigma_max], dtype=x_bar.dtype, device=x_bar.device)
    span = span if encode_direction else span.flip(0)
    return adaptive_odeint(drift, x_bar, span, options.solver, options.rtol, options.atol, _per_sample_rms_max)[-1]


def integrate_fixed(drift, x_bar: torch.Tensor, grid: torch.Tensor, solver: str) -> torch.Tensor:
    """x̄ at grid[-1] by a fixed-step solver stepping through every node of `grid` (increasing: encode)."""
    grid = grid.to(device=x_bar.device, dtype=x_bar.dtype)
    if solver == "dpm2m":
        return dpm_solver_2m(drift, x_bar, grid)
    if solver == "unipc":
        return unipc(drift, x_bar, grid)
    method = "euler" if solver == "ddim" else solver
    # For a decreasing grid torchdiffeq negates time and our constructor's output alike.
    span = grid[[0, -1]]
    return odeint(drift, x_bar, span, method=method, options={"grid_constructor": lambda f, y0, t: grid})[-1]


def encode(
    model: Diffusion, x: torch.Tensor, options: ODEOptions = ODEOptions(), stats: SolveStats | None = None
) -> torch.Tensor:
    """z = ODESolve(x; model, 0 → 1): the data point's latent x_1 (VP scale, ≈ N(0, I) for in-domain x)."""
    sched = model.schedule
    alpha_0 = (1 + sched.sigma_min**2) ** -0.5
    alpha_1 = (1 + sched.sigma_max**2) ** -0.5
    x_bar_1 = solve(model, x / alpha_0, True, options, stats)
    return x_bar_1 * alpha_1


def decode(
    model: Diffusion, z: torch.Tensor, options: ODEOptions = ODEOptions(), stats: SolveStats | None = None
) -> torch.Tensor:
    """x = ODESolve(z; model, 1 → 0): the data point whose latent is z (unclipped)."""
    sched = model.schedule
    alpha_0 = (1 + sched.sigma_min**2) ** -0.5
    alpha_1 = (1 + sched.sigma_max**2) ** -0.5
    x_bar_0 = solve(model, z / alpha_1, False, options, stats)
    return x_bar_0 * alpha_0


def translate(
    source: Diffusion,
    target: Diffusion,
    x: torch.Tensor,
    options: ODEOptions = ODEOptions(),
    stats: SolveStats | None = None,
) -> torch.Tensor:
    """DDIB (Su et al. 2023, Alg. 1): decode(target, encode(source, x))."""
    check_compatible(source, target)
    return decode(target, encode(source, x, options, stats), options, stats)


def sample(
    model: Diffusion,
    n: int,
    generator: torch.Generator | None = None,
    options: ODEOptions = ODEOptions(),
    stats: SolveStats | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """x = decode(model, z) with z ~ N(0, I): deterministic given the generator's seed."""
    z = torch.randn((n, *model.data_shape), generator=generator, device="cpu").to(device)
    return decode(model, z, options, stats)


def check_compatible(source: Diffusion, target: Diffusion) -> None:
    """Both ends of a bridge must share the data shape (resolution and channels)."""
    if tuple(source.data_shape) != tuple(target.data_shape):
        raise DDIBError(
            f"source and target models are incompatible: data shapes {tuple(source.data_shape)} and "
            f"{tuple(target.data_shape)} differ (resolution and channels must match)"
        )
