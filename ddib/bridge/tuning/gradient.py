"""Fixed-step solves fitted by gradient (`learned_solver`): the nodes and per-step corrections of a solver that takes
them, learned together through the solver on minibatches of a larger tuning set, per direction for one model, or,
for one bridge, the source's encode and the target's decode jointly on the translation's error (`tune_bridge`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...errors import DDIBError
from ...evaluation.metrics import LEVELS, rms, rms_levels
from ...model.diffusion import Diffusion
from .. import learned_solver, ode
from ..batching import in_batches, pixel_batch
from ..grids import sigma_grid
from ..learned_solver import LearnedSolve
from ..solvers import GRADIENT, solvers_with, spec
from ..tuned import DIRECTIONS, ImageCounts, TunedDirection, TunedSolve, TuningErrors
from .solves import TuningData, converged, converged_solves, decode_on, encode_on, solve_batch, untuned

# Tuning images per gradient step at 32×32 (`gradient_batch`).
GRADIENT_BATCH = 32


def learnable(options: ode.ODEOptions) -> ode.ODEOptions:
    """The options' untuned solve, checked to be one whose nodes and corrections a gradient fit learns."""
    if GRADIENT not in spec(options.solver).tuning:
        names = " and ".join(solvers_with(GRADIENT))
        raise DDIBError(f"gradient tuning learns {names}'s nodes and coefficients, not {options.solver}'s")
    return untuned(options)


def start_grid(model: Diffusion, options: ode.ODEOptions) -> torch.Tensor:
    """The solver's own grid, where a gradient fit starts."""
    return sigma_grid(model, options.steps, options.rho, uniform_t=spec(options.solver).uniform_t)


def _errors(fitted: learned_solver.FitResult, tune_default: float, tune_tuned: float, iterations: int, unit: str,
            reference: str) -> TuningErrors:  # fmt: skip
    kept = "tuned" if fitted.val_best < fitted.val_start else "default"
    return TuningErrors(kept, tune_default, tune_tuned, fitted.val_start, fitted.val_best, reference, unit,
                        method=GRADIENT, iterations=iterations, best_iteration=fitted.best_iteration)  # fmt: skip


def _direction(solve: LearnedSolve, errors: TuningErrors) -> TunedDirection:
    """One direction fitted by gradient (the untouched start grid when nothing helped; no corrections when all
    are zero)."""
    grid, corrections = solve.export()
    return TunedDirection.of(grid, corrections if any(c != 0 for step in corrections for c in step) else None, errors)


def gradient_batch(*models: Diffusion) -> int:
    """Tuning images per gradient step: GRADIENT_BATCH of 32×32, of larger images as many as hold their pixels (each
    keeps every step's activations for the backward pass)."""
    return pixel_batch(list(models), GRADIENT_BATCH)


def fit_solver(
    model: Diffusion,
    options: ode.ODEOptions,
    reference: ode.ODEOptions,
    data: TuningData,
    directions: tuple[str, ...] = DIRECTIONS,
    iterations: int = 200,
    batch_size: int | None = None,
    on_step: Callable[[str, int, float], None] | None = None,
    coefficients: bool = True,
    lr: float = 0.02,
) -> TunedSolve:
    """Fit the nodes and per-step corrections of `model`'s solve (`unipc`) by gradient (`learned_solver`), per
    direction: the encode on its latents' distance to the converged latents of the tuning images, the decode on its
    images' distance to the converged decode of those latents and of N(0, I) draws (without `coefficients`, the
    nodes only)."""
    plain, ref = learnable(options), converged(reference)
    start = start_grid(model, plain)
    images = {False: data.tune_images, True: data.val_images}
    ref_latents, latents, ref_images = converged_solves(model, model, data, ref, "decode" in directions)
    # Each direction: its inputs and converged outputs, solved with a learned solve; errors in its unit.
    problems = {
        "encode": (images, ref_latents, lambda s, x: ode.encode(model, x, plain, grid=s.grid(),
                                                                 corrections=s.corrections()), 1.0),
        "decode": (latents, ref_images, lambda s, z: ode.decode(model, z, plain, grid=s.grid(),
                                                                 corrections=s.corrections()), LEVELS),
    }  # fmt: skip
    units = {"encode": "latent RMS", "decode": "8-bit levels RMS"}
    parts = {}
    for name in (d for d in DIRECTIONS if d in directions):
        inputs, targets, run, scale = problems[name]
        solve = LearnedSolve(model, start, learn_coefficients=coefficients)

        def error(validation: bool, inputs=inputs, targets=targets, run=run, scale=scale, solve=solve) -> float:
            with torch.no_grad():
                solved = in_batches(lambda c: run(solve, c), inputs[validation], solve_batch(model))
                return scale * rms(solved.to(targets[validation].device), targets[validation])

        def loss(idx: torch.Tensor, inputs=inputs, targets=targets, run=run, scale=scale, solve=solve):
            return (scale * (run(solve, inputs[False][idx]) - targets[False][idx])).square().mean()

        report = None if on_step is None else (lambda k, v, name=name: on_step(name, k, v))
        tune_default = error(False)
        fitted = learned_solver.fit([solve], loss, len(inputs[False]), lambda e=error: e(True), iterations,
                                    batch_size or gradient_batch(model), lr, on_step=report)  # fmt: skip
        errors = _errors(fitted, tune_default, error(False), iterations, units[name], ref.describe())
        parts[name] = _direction(solve, errors)
    counts = ImageCounts(len(data.tune_images), len(data.val_images), len(data.tune_noise))
    return TunedSolve(**parts, reference=ref.describe(), images=counts)


def tune_bridge(
    source: Diffusion,
    target: Diffusion,
    options: ode.ODEOptions,
    reference: ode.ODEOptions,
    data: TuningData,
    iterations: int = 200,
    batch_size: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    coefficients: bool = True,
    lr: float = 0.02,
) -> tuple[TunedSolve, TunedSolve]:
    """Fit the source's encode and the target's decode (nodes and per-step corrections, `unipc`) jointly by gradient
    on the translation's distance to the converged translation of the source's images (`data`); their entries,
    (source's, target's)."""
    plain, ref = learnable(options), converged(reference)
    encoder = LearnedSolve(source, start_grid(source, plain), learn_coefficients=coefficients)
    decoder = LearnedSolve(target, start_grid(target, plain), learn_coefficients=coefficients)
    images = {False: data.tune_images, True: data.val_images}
    with torch.no_grad():
        exact = {v: decode_on(target, encode_on(source, x, ref), ref) for v, x in images.items()}

    def translation(x: torch.Tensor) -> torch.Tensor:
        # In the models' own coordinates (a hue-quotient bridge's hue-0 images): the hue is carried, not solved.
        z = ode.encode(source, x, plain, grid=encoder.grid(), corrections=encoder.corrections())
        return ode.decode(target, z, plain, grid=decoder.grid(), corrections=decoder.corrections())

    def error(validation: bool) -> float:
        with torch.no_grad():
            solved = in_batches(translation, images[validation], solve_batch(source, target))
            solved = solved.to(exact[validation].device)
            return rms_levels(solved, exact[validation])

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return (LEVELS * (translation(images[False][idx]) - exact[False][idx])).square().mean()

    tune_default = error(False)
    fitted = learned_solver.fit([encoder, decoder], loss, len(images[False]), lambda: error(True), iterations,
                                batch_size or gradient_batch(source, target), lr, on_step=on_step)  # fmt: skip
    errors = _errors(fitted, tune_default, error(False), iterations, "8-bit levels RMS of the translation",
                     ref.describe())  # fmt: skip
    counts = ImageCounts(len(data.tune_images), len(data.val_images), 0)
    encode, decode = _direction(encoder, errors), _direction(decoder, errors)
    return (TunedSolve(encode=encode, reference=ref.describe(), images=counts),
            TunedSolve(decode=decode, reference=ref.describe(), images=counts))  # fmt: skip
