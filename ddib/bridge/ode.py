"""The DDIB bridge: probability-flow ODE encode/decode as plain functions over a `Diffusion` model.

The probability-flow ODE of a VP diffusion (Song et al. 2021) is solved in the DDIM coordinates
(Song et al. 2021a; Karras et al. 2022): state x̄ = x/α, independent variable σ̄ = σ/α, where it reads

    dx̄/dσ̄ = ε̂(α(σ̄)·x̄, t(σ̄)),    α(σ̄) = 1/√(1 + σ̄²)        (`Diffusion.eps_bar`).

In these coordinates the ODE is nearly linear in σ̄ (exactly so where ε̂ is constant), so one Euler step
there *is* the deterministic DDIM update, and higher-order solvers gain the most from each evaluation. The
integrators are in `solvers.py`, the step grids in `grids.py`.

encode:    z = ODESolve(x; source, t 0 → 1)        (DDIB eq. 5)
decode:    x = ODESolve(z; target, t 1 → 0)
translate: decode(target, encode(source, x))       (DDIB Algorithm 1)

Hue-quotient models (`Diffusion.hue_quotient`) model their domain's hue-0 slice: the latent is the pair (z, θ),
encode takes the image's hue θ out before solving (`Diffusion.image_hue`, `to_model_space`) and decode turns its
hue-0 image to θ afterwards, so a bridge of two of them carries every image's hue exactly. `encode_latent` returns
z with what travels beside it (`Latent`); `decode` takes either.

An encode never clips: clipping x̂0 would make it non-invertible. A decode clips x̂0 to [-1, 1] only when asked
(`ODEOptions.clip`, guided-diffusion's `clip_denoised`, which the official DDIB decodes with), and is steered by
the decoding model's noisy classifier when it has one (`guided_drift`, the official DDIB's ImageNet decode); an
encode is never guided.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..model.noisy_classifier import log_prob_grad
from ..utils import reduced_precision, tf32_kernels
from . import presets
from .grids import grid_name, sigma_grid, tuned_corrections, tuned_grid
from .latent import Latent
from .solvers import (
    ADAPTIVE_SOLVERS,
    EVALS_PER_STEP,
    FIXED_SOLVERS,
    SOLVERS,
    SolverSpec,
    adaptive_odeint,
    corrected,
    per_sample_rms_max,
    spec,
)

# Defaults chosen from `ddib bench translate` (docs/solvers.md).
DEFAULT_SOLVER = "unipc"
DEFAULT_STEPS = 20  # for models without a default of their own (`Diffusion.default_steps`, set by tune-solver)
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4

__all__ = ["ADAPTIVE_SOLVERS", "EVALS_PER_STEP", "FIXED_SOLVERS", "SOLVERS", "Latent", "ODEOptions", "SolveStats",
           "bridge_ends", "decode", "encode", "encode_latent", "expected_nfe", "model_steps", "preset_followed",
           "resolve_steps", "sample", "sample_hue", "sample_latent", "translate"]  # fmt: skip


@dataclass(frozen=True)
class ODEOptions:
    """How to solve the probability-flow ODE: method, fixed-step budget, adaptive tolerances, grid shape."""

    solver: str = DEFAULT_SOLVER
    steps: int | None = None  # None: the model's default for the solver (`model_steps`)
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    rho: float | None = None  # None: the solver's default grid (`SolverSpec.rho`)
    tuned: bool = True  # use a model's tuned grid for this solver and step count when it has one (`tuned_grid`)
    # Without steps: the models' stored preset of this name (`presets`); `default` without one is the rule before
    # presets (`model_steps`).
    quality: str = presets.DEFAULT
    # Decode solves only: x̂₀ clipped to the model's data box, [-1, 1] or [0, 1] (`clipped_drift`); an encode never
    # clips.
    clip: bool = False
    # Decode solves only: the weight of the decoding model's noisy classifier (`guided_drift`); None: the scale the
    # classifier came with, 0: unguided. An encode is never guided.
    classifier_scale: float | None = None

    def __post_init__(self):
        if self.rho is None:
            object.__setattr__(self, "rho", spec(self.solver).rho)  # an unknown solver is a DDIBError
        presets.check_quality(self.quality)
        if self.quality != presets.DEFAULT and not self.is_fixed:
            raise DDIBError(f"--quality is for fixed-step solvers; {self.solver} is adaptive (use --rtol/--atol)")
        if self.is_fixed and self.steps is not None and not (isinstance(self.steps, int) and self.steps >= 1):
            raise DDIBError(f"--steps must be a positive integer, got {self.steps!r}")
        if not (self.rtol > 0 and self.atol > 0):
            raise DDIBError("--rtol and --atol must be positive")
        if not self.rho > 0:
            raise DDIBError("rho must be positive")
        if self.classifier_scale is not None and not (0 <= self.classifier_scale < math.inf):
            raise DDIBError(f"--classifier-scale must be a finite number ≥ 0, got {self.classifier_scale:g}")

    @property
    def is_fixed(self) -> bool:
        return self.spec.fixed

    @property
    def spec(self) -> SolverSpec:
        return spec(self.solver)

    def describe(self) -> str:
        if self.is_fixed:
            default = self.spec.uniform_t or self.rho == self.spec.rho
            grid = "" if default else f", {grid_name(self.rho)} grid"
            steps = "the model's default" if self.steps is None else self.steps
            return f"{self.solver} × {steps} steps{grid}{self._clip_note}"
        return f"{self.solver} (rtol={self.rtol:g}, atol={self.atol:g}){self._clip_note}"

    @property
    def _clip_note(self) -> str:
        return ", x̂₀ clipped when decoding" if self.clip else ""


@dataclass
class SolveStats:
    """Counts the network evaluations (NFE) of every solve; one evaluation covers a whole batch. `on_evaluation`,
    when set, is called after each (a progress display's hook: the library itself never prints)."""

    nfe: int = 0
    solves: int = 0
    per_solve: list[int] = field(default_factory=list)
    on_evaluation: Callable[[], None] | None = None

    def add(self, nfe: int) -> None:
        self.nfe += nfe
        self.solves += 1
        self.per_solve.append(nfe)


def model_steps(model: Diffusion, solver: str) -> int:
    """The step count `model` solves with when none is given: its own default for the solver (set by
    `ddib tune-solver --make-default`), else DEFAULT_STEPS."""
    return model.default_steps.get(model.solver_key(solver), DEFAULT_STEPS)


def expected_nfe(options: ODEOptions) -> int:
    """Network evaluations of one fixed-step solve with a resolved step count (for progress displays)."""
    return options.steps * options.spec.evals_per_step


def resolve_steps(options: ODEOptions, *models: Diffusion) -> ODEOptions:
    """The options with a step count: the one given, else the models' stored preset `options.quality` (its steps,
    and its own grid where it is not on a tuned one), else the largest default among the models; one count for
    every direction of a bridge (`presets.combine`)."""
    if options.steps is not None or not options.is_fixed:
        return options
    chosen = _preset(options, models)
    if chosen is None:
        return replace(options, steps=max((model_steps(m, options.solver) for m in models), default=DEFAULT_STEPS))
    return replace(options, steps=chosen.steps, tuned=options.tuned and chosen.tuned)


def _preset(options: ODEOptions, models: tuple[Diffusion, ...]) -> presets.Preset | None:
    return presets.bridge_preset(options.quality, options.solver, models, lambda m: model_steps(m, options.solver))


def preset_followed(options: ODEOptions, *models: Diffusion) -> str | None:
    """The name of the stored preset this solve is (`options.quality`'s, where the models store one and the solve
    has its step count and grid), else None."""
    if not options.is_fixed or not any(presets.stored(m, options.solver) for m in models):
        return None
    try:
        chosen = _preset(replace(options, steps=None), models)
    except DDIBError:  # --steps given beside a preset the models do not store
        return None
    solved = resolve_steps(options, *models)
    if chosen is None or solved.steps != chosen.steps:
        return None
    on_tuned = uses_tuned_grid(solved, *models)
    if on_tuned != uses_tuned_grid(replace(solved, tuned=chosen.tuned), *models):
        return None
    return options.quality if on_tuned or solved.rho == solved.spec.rho or solved.spec.uniform_t else None


def pf_ode_drift(model: Diffusion, counter: list[int]):
    """f(σ̄, x̄) = dx̄/dσ̄ = ε̂(α(σ̄)·x̄, t(σ̄)), the probability-flow ODE in DDIM coordinates, counting evaluations."""

    def drift(sigma_bar: torch.Tensor, x_bar: torch.Tensor) -> torch.Tensor:
        counter[0] += 1
        return model.eps_bar(x_bar, sigma_bar)

    return drift


def clipped_drift(drift, bounds: tuple[float, float] = (-1.0, 1.0)):
    """The drift of the denoiser whose x̂₀ = x̄ − σ̄ε̂ is clipped to the data's box (e.g. [−1, 1]):
    ε̃ = (x̄ − clip(x̂₀))/σ̄, guided-diffusion's `clip_denoised` (diffusers' `clip_sample` with
    `use_clipped_model_output`); with --solver ddim, its DDIM sampler."""

    def clipped(sigma_bar: torch.Tensor, x_bar: torch.Tensor) -> torch.Tensor:
        x0 = (x_bar - sigma_bar * drift(sigma_bar, x_bar)).clamp(*bounds)
        return (x_bar - x0) / sigma_bar

    return clipped


def guided_drift(drift, model: Diffusion, scale: float):
    """The drift of the classifier-guided denoiser, ε̃ = ε̂ − s·σ̄·∇_x̄ log p_φ(y | α·x̄, t) (Dhariwal & Nichol 2021;
    guided-diffusion's `condition_score`, applied after clipping as there)."""

    def guided(sigma_bar: torch.Tensor, x_bar: torch.Tensor) -> torch.Tensor:
        return drift(sigma_bar, x_bar) - scale * sigma_bar * log_prob_grad(model, x_bar, sigma_bar)

    return guided


def classifier_scale(model: Diffusion, options: ODEOptions) -> float:
    """The classifier guidance a decode by `model` uses: the options' scale, else its classifier's own; 0 without
    a classifier or a label to guide towards."""
    if options.classifier_scale is None:
        return model.classifier.scale if model.classifier is not None and model.label is not None else 0.0
    if options.classifier_scale and model.classifier is None:
        raise DDIBError("--classifier-scale needs a decoding model with a noisy classifier (a guided-diffusion "
                        "checkpoint whose flags name a classifier_path)")  # fmt: skip
    if options.classifier_scale and model.label is None:
        raise DDIBError("--classifier-scale needs the class to guide towards: name the model as PATH:LABEL or "
                        "register it with --label")  # fmt: skip
    return options.classifier_scale


def check_clip(model: Diffusion) -> None:
    """Clipping x̂₀ needs images whose model space is a cube ([−1, 1] or [0, 1], RGB or grey), not points or the
    HSV cone."""
    if len(model.data_shape) != 3 or model.config.color_space != "rgb":
        kind = "points" if len(model.data_shape) != 3 else f"{model.config.color_space} colour space"
        raise DDIBError(f"--clip is for image models whose data lie in a box (RGB or grey), not {kind}")


def step_grid(model: Diffusion, options: ODEOptions, direction: str) -> torch.Tensor:
    """The σ̄ nodes a solve goes through, in its direction: the model's tuned grid when it has one (and options
    allow it), else the solver's grid; for adaptive solvers just the span's two ends."""
    sched = model.schedule
    if not options.is_fixed:
        grid = torch.tensor([sched.sigma_min, sched.sigma_max], dtype=torch.float64)
    else:
        options = resolve_steps(options, model)
        grid = tuned_grid(model, options.solver, options.steps, direction) if options.tuned else None
        if grid is None:
            grid = sigma_grid(model, options.steps, options.rho, uniform_t=options.spec.uniform_t)
    return grid if direction == "encode" else grid.flip(0)


def step_corrections(model: Diffusion, options: ODEOptions, direction: str) -> list[list[float]] | None:
    """The model's tuned per-step corrections for this solve, when it has them and solves on its tuned grid."""
    if not (options.is_fixed and options.tuned):
        return None
    options = resolve_steps(options, model)
    if tuned_grid(model, options.solver, options.steps, direction) is None:
        return None
    return tuned_corrections(model, options.solver, options.steps, direction)


def uses_tuned_grid(options: ODEOptions, *models: Diffusion) -> bool:
    """Whether any of the models solves on a tuned grid under `options` (for summaries)."""
    if not (options.tuned and options.is_fixed):
        return False
    options = resolve_steps(options, *models)
    found = (tuned_grid(m, options.solver, options.steps, d) for m in models for d in ("encode", "decode"))
    return any(g is not None for g in found)


def describe_solve(options: ODEOptions, *models: Diffusion, name_preset: bool = True) -> str:
    """'unipc × 10 steps', with ', tuned grid' (and coefficients) when one of the models solves on its tuned grid,
    and (with `name_preset`) ' (fast preset)' when the solve is the models' stored preset `options.quality`."""
    resolved = resolve_steps(options, *models)
    text = resolved.describe()
    if models and resolved.is_fixed and resolved.spec.uniform_t:  # DDIM's grid: a table's integer timesteps
        taken = sorted({len(step_grid(m, resolved, "decode")) - 1 for m in models})
        if taken != [resolved.steps]:
            tables = "table's" if len(models) == 1 else "tables'"
            text += f" (the {tables} own timesteps: {' / '.join(map(str, taken))} steps taken)"
    if uses_tuned_grid(options, *models):
        found = (step_corrections(m, resolved, d) for m in models for d in ("encode", "decode"))
        text += ", tuned grid and coefficients" if any(c is not None for c in found) else ", tuned grid"
    if models and (scale := classifier_scale(models[-1], options)):  # the last model decodes
        text += f", classifier-guided decode (scale {scale:g})"
    named = preset_followed(options, *models) if name_preset else None
    return text if named is None else f"{text} ({named} preset)"


def solve(model: Diffusion, x_bar: torch.Tensor, grid: torch.Tensor, options: ODEOptions = ODEOptions(),
          stats: SolveStats | None = None, corrections: list | None = None,
          clip: bool = False, guide: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Integrate dx̄/dσ̄ from grid[0] to grid[-1] (through every node for fixed-step solvers; the grid's order is
    the direction); `corrections` are tuned per-step coefficients of the `unipc` solver; `clip` clips x̂₀
    (`clipped_drift`), `guide` weighs the model's noisy classifier (`guided_drift`). Differentiable only in a grid
    or corrections that require gradients (`learned_solver`); otherwise no autograd graph is kept."""
    learning = grid.requires_grad or any(torch.is_tensor(c) and c.requires_grad for c in corrections or [])
    counter = [0]
    drift = pf_ode_drift(model, counter)
    if clip:
        drift = clipped_drift(drift, model.data_bounds)
    if guide:
        drift = guided_drift(drift, model, guide)
    if stats is not None and stats.on_evaluation is not None:
        drift = _announcing(drift, stats.on_evaluation)
    grid = grid.to(device=x_bar.device, dtype=x_bar.dtype)
    # Full fp32 kernels: a solve must not depend on the GPU's default precision. An encode (increasing σ̄) never
    # runs a bf16/fp16 speed setting either: the flow expands towards noise and grows rounding errors, which the
    # decode direction damps (docs/speed.md).
    encoding = bool(grid[-1] > grid[0])
    with (
        torch.set_grad_enabled(learning and torch.is_grad_enabled()),
        tf32_kernels(False),
        reduced_precision(not encoding),
    ):
        if corrections is not None:
            if not options.spec.corrections:
                takers = " and ".join(name for name, s in SOLVERS.items() if s.corrections)
                raise DDIBError(f"solver corrections are for {takers}, not {options.solver}")
            out = options.spec.step(drift, x_bar, grid, adjust=corrected(corrections))
        elif options.is_fixed:
            out = options.spec.step(drift, x_bar, grid)
        else:
            rtol, atol = options.rtol, options.atol
            out = adaptive_odeint(drift, x_bar, grid[[0, -1]], options.solver, rtol, atol, per_sample_rms_max)[-1]
    if stats is not None:
        stats.add(counter[0])
    return out


def encode(model: Diffusion, x: torch.Tensor, options: ODEOptions = ODEOptions(), stats: SolveStats | None = None,
           grid: torch.Tensor | None = None, corrections: list | None = None) -> torch.Tensor:  # fmt: skip
    """z = ODESolve(x; model, 0 → 1): the data point's latent x_1 (VP scale, ≈ N(0, I) for in-domain x).

    `grid` (increasing σ̄ nodes) overrides the grid a fixed-step solver would use, with `corrections` in place of
    the model's tuned ones.
    """
    corrections = step_corrections(model, options, "encode") if grid is None else corrections
    grid = step_grid(model, options, "encode") if grid is None else grid
    alpha_0, alpha_1 = _alpha_ends(model, grid)
    return solve(model, model.to_model_space(x) / alpha_0, grid, options, stats, corrections) * alpha_1


def encode_latent(model: Diffusion, x: torch.Tensor, options: ODEOptions = ODEOptions(),
                  stats: SolveStats | None = None) -> Latent:  # fmt: skip
    """(z, what travels beside it) for images x: z = encode(model, x), with each image's hue θ for a hue-quotient
    model and the class label of a conditional one."""
    label = None if model.label is None else torch.full((len(x),), model.label, dtype=torch.long, device=x.device)
    return Latent(encode(model, x, options, stats), model.image_hue(x), label)


def decode(model: Diffusion, latent: Latent | torch.Tensor, options: ODEOptions = ODEOptions(),
           stats: SolveStats | None = None, grid: torch.Tensor | None = None,
           corrections: list | None = None) -> torch.Tensor:  # fmt: skip
    """x = ODESolve(z; model, 1 → 0): the data point whose latent is z (x̂₀ clipped on the way only with
    `options.clip`, guided by the model's noisy classifier when it has one); a `Latent`'s hues turn a hue-quotient
    model's images (a bare z: its own hue 0).

    `grid` (increasing σ̄ nodes, walked backwards) overrides the grid a fixed-step solver would use, with
    `corrections` (in solve order) in place of the model's tuned ones.
    """
    z, hue = (latent.z, latent.hue) if isinstance(latent, Latent) else (latent, None)
    if options.clip:
        check_clip(model)
    corrections = step_corrections(model, options, "decode") if grid is None else corrections
    grid = step_grid(model, options, "decode") if grid is None else grid.flip(0)
    alpha_0, alpha_1 = _alpha_ends(model, grid)
    guide = classifier_scale(model, options)
    x_bar = solve(model, z / alpha_1, grid, options, stats, corrections, clip=options.clip, guide=guide)
    return model.to_images(x_bar * alpha_0, hue)


def _announcing(drift, on_evaluation: Callable[[], None]):
    """The drift, calling `on_evaluation` after each evaluation."""

    def announced(sigma_bar: torch.Tensor, x_bar: torch.Tensor) -> torch.Tensor:
        out = drift(sigma_bar, x_bar)
        on_evaluation()
        return out

    return announced


def _alpha_ends(model: Diffusion, grid: torch.Tensor) -> tuple[float, float]:
    """(α at the data end, α at the latent end) of a solve's grid, in either order: x = α·x̄ at each end."""
    lo, hi = sorted((float(grid[0].detach()), float(grid[-1].detach())))
    return model.schedule.alpha_of_sigma_bar(lo), model.schedule.alpha_of_sigma_bar(hi)


def translate(
    source: Diffusion,
    target: Diffusion,
    x: torch.Tensor,
    options: ODEOptions = ODEOptions(),
    stats: SolveStats | None = None,
) -> torch.Tensor:
    """DDIB (Su et al. 2023, Alg. 1): decode(target, encode(source, x)), with what travels beside the latent (a
    hue-quotient image's θ) carried through."""
    source, target = bridge_ends(source, target)
    options = resolve_steps(options, source, target)
    return decode(target, encode_latent(source, x, options, stats), options, stats)


def sample(
    model: Diffusion,
    n: int,
    generator: torch.Generator | None = None,
    options: ODEOptions = ODEOptions(),
    stats: SolveStats | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """x = decode(model, z) with z ~ N(0, I) (and a hue-quotient model's θ ~ U[0, 2π)): deterministic given the
    generator's seed."""
    return decode(model, sample_latent(model, n, generator).to(device), options, stats)


def sample_latent(model: Diffusion, n: int, generator: torch.Generator | None = None) -> Latent:
    """z ~ N(0, I) on the CPU, then (after all of z, so z does not depend on it) a hue-quotient model's θ."""
    z = torch.randn((n, *model.data_shape), generator=generator)
    return Latent(z, sample_hue(model, n, generator))


def sample_hue(model: Diffusion, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """θ ~ U[0, 2π) per image for a hue-quotient model (the colored-MNIST recipe's uniform hue); None otherwise."""
    return torch.rand(n, generator=generator) * (2 * torch.pi) if model.hue_quotient else None


def bridge_ends(source: Diffusion, target: Diffusion) -> tuple[Diffusion, Diffusion]:
    """The two ends of a bridge, checked compatible, each solved up to the largest σ̄ both reach: the latent is
    passed at one noise level, so a model whose table stops lower sets where both meet."""
    check_compatible(source, target)
    meet = min(source.schedule.sigma_max, target.schedule.sigma_max)
    return source.within(meet), target.within(meet)


def check_compatible(source: Diffusion, target: Diffusion) -> None:
    """Both ends of a bridge must share the data shape (resolution and channels), the latent's colour space and
    what the latent leaves out (a hue-quotient latent is (z, θ); another model's z holds the hue itself)."""
    if tuple(source.data_shape) != tuple(target.data_shape):
        raise DDIBError(
            f"source and target models are incompatible: they take {_data_kind(source.data_shape)} and "
            f"{_data_kind(target.data_shape)}; both ends must take the same resolution and channels"
        )
    if source.config.quotient != target.config.quotient:
        raise DDIBError(
            f"source and target models are incompatible: one leaves the hue out of its latent and the other does not "
            f"(quotient {source.config.quotient} and {target.config.quotient}); train both with the same --quotient"
        )
    if source.config.color_space != target.config.color_space:
        raise DDIBError(
            f"source and target models are incompatible: their latents live in different colour spaces "
            f"({source.config.color_space} and {target.config.color_space}); train both with the same --color-space"
        )


def _data_kind(shape) -> str:
    shape = tuple(shape)
    if len(shape) == 1:
        return f"{shape[0]}-D points"
    if len(shape) == 3:
        return f"{shape[1]}×{shape[2]} images of {shape[0]} channels"
    return f"inputs of shape {shape}"
