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

`method="gradient"` (`learned_solver`) instead fits the nodes and the coefficients together by gradient descent
through the solver, on minibatches of a larger tuning set; for one bridge it fits the source's encode and the
target's decode jointly on the translation's error (`tune_bridge`).

Tuned for one bridge by search, each side sees what the translation feeds it: the target's decode grid is tuned on the
source's latents of source images, and the source's encode grid on the translation's error after the target's
converged decode (what the translation shows, rather than latent error along directions the target's decode
may ignore).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..utils import tf32_kernels
from . import learned_solver, ode
from .batching import in_batches
from .grids import sigma_grid
from .learned_solver import LearnedSolve
from .solvers import exponential_multistep_pc

LEVELS = 127.5  # pixel errors in 8-bit levels: RMS over [-1, 1] × 127.5
DIRECTIONS = ("encode", "decode")
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


def encode_on(model: Diffusion, x: torch.Tensor, options: ode.ODEOptions, grid: torch.Tensor | None = None,
              corrections: list[list[float]] | None = None, batch_size: int = 64) -> torch.Tensor:  # fmt: skip
    """Latents of images x by the solve `options`, in batches; with `grid` (increasing σ̄), a fixed-step solve
    through those nodes with per-step `corrections`."""
    encode = lambda c: ode.encode(model, c, options, grid=grid, corrections=corrections)  # noqa: E731
    return in_batches(encode, x, batch_size).to(x.device)


def decode_on(model: Diffusion, z: torch.Tensor, options: ode.ODEOptions, grid: torch.Tensor | None = None,
              corrections: list[list[float]] | None = None, batch_size: int = 64) -> torch.Tensor:  # fmt: skip
    """Images of latents z by the solve `options`, in batches; with `grid` (given increasing), a fixed-step solve
    back through those nodes with per-step `corrections` (in solve order)."""
    decode = lambda c: ode.decode(model, c, options, grid=grid, corrections=corrections)  # noqa: E731
    return in_batches(decode, z, batch_size).to(z.device)


@torch.no_grad()
def fit_corrections(model: Diffusion, x_bar: torch.Tensor, grid: torch.Tensor, substeps: int = 10,
                    ridge: float = 1e-6) -> list[list[float]]:  # fmt: skip
    """Per-step coefficients of `unipc` along its x̂0 differences (`solvers.corrected`), fitted greedily: each step's
    result is moved, by least squares over all of x̄ (DDIM coordinates, grid in solve order), onto the converged
    trajectory's state at the next node (the same solver with every span cut into `substeps` log-uniform steps)."""
    drift = ode.pf_ode_drift(model, [0])
    grid = grid.to(device=x_bar.device, dtype=x_bar.dtype)
    states = [x_bar]
    with tf32_kernels(False):
        for lo, hi in zip(grid[:-1], grid[1:], strict=True):
            span = lo * (hi / lo) ** torch.linspace(0, 1, substeps + 1, dtype=grid.dtype, device=grid.device)
            states.append(exponential_multistep_pc(drift, states[-1], span))
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
        exponential_multistep_pc(drift, x_bar, grid, adjust=fit)
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
    coefficients: bool = True,
    source: Diffusion | None = None,
    target: Diffusion | None = None,
) -> dict:
    """Tune the grids of `model` for options.solver × options.steps in `directions` (a DDIB source only encodes,
    a target only decodes), then, for `unipc` with `coefficients`, its per-step corrections on the kept grid; each
    kept only where it lowers the validation error. The config.json entry, without the directions left untuned.

    For one bridge: with `source`, the decode is tuned on the source's latents of `data`'s images (the source's
    domain) instead of the model's own; with `target`, the encode's error is measured after the target's converged
    decode (in levels), so latent errors the target's decode ignores cost nothing."""
    unknown = set(directions) - set(DIRECTIONS)
    if unknown or not directions:
        raise ValueError(f"directions must be among {DIRECTIONS}, got {directions}")
    if source is not None and "encode" in directions:
        raise ValueError("a source's latents tune the decode only: the encode runs on the model's own domain")
    untuned, ref = _untuned(options), _converged(reference)
    start = sigma_grid(model, options.steps, untuned.rho, uniform_t=options.solver == "ddim")
    alpha_0, alpha_1 = model.schedule.alpha_ends
    encoder = model if source is None else source
    converged_decode = None if target is None else (lambda z: decode_on(target, z, ref))
    ref_latents, latents, ref_images = _converged_solves(model, encoder, data, ref, "decode" in directions)
    with torch.no_grad():
        ref_bridged = {} if converged_decode is None else {v: converged_decode(z) for v, z in ref_latents.items()}

    def encode_error(grid: torch.Tensor, validation: bool, corrections=None) -> float:
        x = data.val_images if validation else data.tune_images
        z = encode_on(model, x, untuned, grid, corrections)
        if converged_decode is None:
            return rms(z, ref_latents[validation])
        return LEVELS * rms(converged_decode(z), ref_bridged[validation])

    def decode_error(grid: torch.Tensor, validation: bool, corrections=None) -> float:
        decoded = decode_on(model, latents[validation], untuned, grid, corrections)
        return LEVELS * rms(decoded, ref_images[validation])

    # Other grid shapes to start the search from: EDM's ρ-grids, denser at low noise as ρ falls.
    shapes = () if options.solver == "ddim" else tuple(sigma_grid(model, options.steps, rho) for rho in SEED_RHOS)
    # Where each direction starts, in DDIM coordinates and in solve order, for fitting the corrections.
    starts = {
        "encode": lambda: model.to_model_space(data.tune_images) / alpha_0,
        "decode": lambda: latents[False] / alpha_1,
    }
    # Each direction's whole solve on the tuning data as a function of its corrections, and where it should end.
    solvers = {
        "encode": lambda g: lambda c: encode_on(model, data.tune_images, untuned, g, c),
        "decode": lambda g: lambda c: decode_on(model, latents[False], untuned, g, c),
    }  # fmt: skip
    ends = {"encode": ref_latents[False], "decode": ref_images.get(False)}
    results, fits = {}, {}
    errors = {"encode": encode_error, "decode": decode_error}
    for name in (d for d in DIRECTIONS if d in directions):
        error = errors[name]
        report = None if on_eval is None else (lambda k, v, name=name: on_eval(name, k, v))
        results[name] = tune_direction(model, start, error, budget, report, shapes)
        if coefficients and options.solver == "unipc":
            grid = torch.tensor(results[name].grid, dtype=torch.float64)
            solve_order = grid if name == "encode" else grid.flip(0)
            fitted = fit_corrections(model, starts[name](), solve_order)
            fitted = refine_corrections(solvers[name](grid), ends[name], fitted)
            before = min(results[name].val_tuned, results[name].val_default)
            after = error(grid, True, fitted)
            fits[name] = {"coefficients": fitted, "tune": error(grid, False, fitted), "val": after,
                          "kept": after < before}  # fmt: skip
    units = {
        "encode": "latent RMS" if target is None else "8-bit levels RMS after the target's converged decode",
        "decode": "8-bit levels RMS" + ("" if source is None else " on the source's latents"),
    }  # fmt: skip
    entry = {name: r.grid for name, r in results.items()}
    entry.update({f"{name}_corrections": f["coefficients"] for name, f in fits.items() if f["kept"]})
    return {
        **entry,
        "reference": ref.describe(),
        "images": {
            "tune": len(data.tune_images),
            "validation": len(data.val_images),
            "noise": len(data.tune_noise),
        },  # fmt: skip
        "errors": {
            name: {
                **{k: v for k, v in vars(r).items() if k != "grid"},
                **(
                    {
                        "tune_corrected": fits[name]["tune"],
                        "val_corrected": fits[name]["val"],
                        "corrections": "kept" if fits[name]["kept"] else "dropped",
                    }
                    if name in fits
                    else {}
                ),
                "reference": ref.describe(),
                "unit": units[name],
            }  # fmt: skip
            for name, r in results.items()
        },
    }


def merge_entry(old: dict | None, new: dict) -> dict:
    """A config.json grid entry with `new`'s directions and `old`'s for the directions `new` did not tune."""
    if not old:
        return new
    kept = [d for d in DIRECTIONS if d in old and d not in new]
    merged = {**new, "errors": {**{d: old["errors"][d] for d in kept if d in old.get("errors", {})}, **new["errors"]}}
    merged.update({key: old[key] for d in kept for key in (d, f"{d}_corrections") if key in old})
    return merged


def _gradient_errors(fitted: learned_solver.FitResult, tune_default: float, tune_tuned: float, iterations: int,
                     unit: str, reference: str) -> dict:  # fmt: skip
    return {
        "method": "gradient",
        "kept": "tuned" if fitted.val_best < fitted.val_start else "default",
        "tune_default": tune_default,
        "tune_tuned": tune_tuned,
        "val_default": fitted.val_start,
        "val_tuned": fitted.val_best,
        "iterations": iterations,
        "best_iteration": fitted.best_iteration,
        "reference": reference,
        "unit": unit,
    }


def _gradient_entry(direction: str, solve: LearnedSolve, errors: dict, images: dict) -> dict:
    """A config.json entry for one direction fitted by gradient (the untouched start grid when nothing helped)."""
    grid, corrections = solve.export()
    entry = {direction: grid, "reference": errors["reference"], "images": images, "errors": {direction: errors}}
    if any(c != 0 for step in corrections for c in step):
        entry[f"{direction}_corrections"] = corrections
    return entry


def fit_solver(
    model: Diffusion,
    options: ode.ODEOptions,
    reference: ode.ODEOptions,
    data: TuningData,
    directions: tuple[str, ...] = DIRECTIONS,
    iterations: int = 200,
    batch_size: int = 32,
    on_step: Callable[[str, int, float], None] | None = None,
    coefficients: bool = True,
    lr: float = 0.02,
) -> dict:
    """Fit the `unipc` nodes and per-step corrections of `model` by gradient (`learned_solver`), per direction:
    the encode on its latents' distance to the converged latents of the tuning images, the decode on its images'
    distance to the converged decode of those latents and of N(0, I) draws (without `coefficients`, the nodes only);
    the config.json entry."""
    untuned, ref = _untuned(options, gradient=True), _converged(reference)
    start = sigma_grid(model, options.steps, untuned.rho)
    images = {False: data.tune_images, True: data.val_images}
    ref_latents, latents, ref_images = _converged_solves(model, model, data, ref, "decode" in directions)
    # Each direction: its inputs and converged outputs, solved with a learned solve; errors in its unit.
    problems = {
        "encode": (images, ref_latents, lambda s, x: ode.encode(model, x, untuned, grid=s.grid(),
                                                                 corrections=s.corrections()), 1.0),
        "decode": (latents, ref_images, lambda s, z: ode.decode(model, z, untuned, grid=s.grid(),
                                                                 corrections=s.corrections()), LEVELS),
    }  # fmt: skip
    units = {"encode": "latent RMS", "decode": "8-bit levels RMS"}
    counts = {"tune": len(data.tune_images), "validation": len(data.val_images), "noise": len(data.tune_noise)}
    entry: dict = {"errors": {}}
    for name in (d for d in DIRECTIONS if d in directions):
        inputs, targets, run, scale = problems[name]
        solve = LearnedSolve(model, start, learn_coefficients=coefficients)

        def error(validation: bool, inputs=inputs, targets=targets, run=run, scale=scale, solve=solve) -> float:
            with torch.no_grad():
                solved = in_batches(lambda c: run(solve, c), inputs[validation], 64)
                return scale * rms(solved.to(targets[validation].device), targets[validation])

        def loss(idx: torch.Tensor, inputs=inputs, targets=targets, run=run, scale=scale, solve=solve):
            return (scale * (run(solve, inputs[False][idx]) - targets[False][idx])).square().mean()

        report = None if on_step is None else (lambda k, v, name=name: on_step(name, k, v))
        tune_default = error(False)
        fitted = learned_solver.fit([solve], loss, len(inputs[False]), lambda e=error: e(True), iterations,
                                    batch_size, lr, on_step=report)  # fmt: skip
        errors = _gradient_errors(fitted, tune_default, error(False), iterations, units[name], ref.describe())
        one = _gradient_entry(name, solve, errors, counts)
        entry["errors"].update(one.pop("errors"))
        entry.update(one)
    return entry


def tune_bridge(
    source: Diffusion,
    target: Diffusion,
    options: ode.ODEOptions,
    reference: ode.ODEOptions,
    data: TuningData,
    iterations: int = 200,
    batch_size: int = 32,
    on_step: Callable[[int, float], None] | None = None,
    coefficients: bool = True,
    lr: float = 0.02,
) -> tuple[dict, dict]:
    """Fit the source's encode and the target's decode (`unipc` nodes and per-step corrections) jointly by gradient
    on the translation's distance to the converged translation of the source's images (`data`); their config.json
    entries, (source's, target's)."""
    untuned, ref = _untuned(options, gradient=True), _converged(reference)
    encoder = LearnedSolve(source, sigma_grid(source, options.steps, untuned.rho), learn_coefficients=coefficients)
    decoder = LearnedSolve(target, sigma_grid(target, options.steps, untuned.rho), learn_coefficients=coefficients)
    images = {False: data.tune_images, True: data.val_images}
    with torch.no_grad():
        converged = {v: decode_on(target, encode_on(source, x, ref), ref) for v, x in images.items()}

    def translation(x: torch.Tensor) -> torch.Tensor:
        # In the models' own coordinates (a hue-quotient bridge's hue-0 images): the hue is carried, not solved.
        z = ode.encode(source, x, untuned, grid=encoder.grid(), corrections=encoder.corrections())
        return ode.decode(target, z, untuned, grid=decoder.grid(), corrections=decoder.corrections())

    def error(validation: bool) -> float:
        with torch.no_grad():
            solved = in_batches(translation, images[validation], 64).to(converged[validation].device)
            return LEVELS * rms(solved, converged[validation])

    def loss(idx: torch.Tensor) -> torch.Tensor:
        return (LEVELS * (translation(images[False][idx]) - converged[False][idx])).square().mean()

    tune_default = error(False)
    fitted = learned_solver.fit([encoder, decoder], loss, len(images[False]), lambda: error(True), iterations,
                                batch_size, lr, on_step=on_step)  # fmt: skip
    errors = _gradient_errors(fitted, tune_default, error(False), iterations, "8-bit levels RMS of the translation",
                              ref.describe())  # fmt: skip
    counts = {"tune": len(data.tune_images), "validation": len(data.val_images), "noise": 0}
    return _gradient_entry("encode", encoder, errors, counts), _gradient_entry("decode", decoder, errors, counts)


@torch.no_grad()
def _converged_solves(model: Diffusion, encoder: Diffusion, data: TuningData, ref: ode.ODEOptions, decode: bool):
    """Keyed by validation (False/True): the encoder's converged latents of the images, those latents with the
    N(0, I) draws appended, and (with `decode`) the model's converged decodes of the latter."""
    images = {False: data.tune_images, True: data.val_images}
    ref_latents = {v: encode_on(encoder, x, ref) for v, x in images.items()}
    latents = {v: torch.cat([ref_latents[v], n]) for v, n in ((False, data.tune_noise), (True, data.val_noise))}
    ref_images = {v: decode_on(model, z, ref) for v, z in latents.items()} if decode else {}
    return ref_latents, latents, ref_images


def _untuned(options: ode.ODEOptions, gradient: bool = False) -> ode.ODEOptions:
    """The options' solve on its untuned grid (for `gradient` fits, only `unipc`, whose coefficients they learn)."""
    if gradient and options.solver != "unipc":
        raise DDIBError(f"gradient tuning learns unipc's nodes and coefficients, not {options.solver}'s")
    return ode.ODEOptions(options.solver, options.steps, rho=options.rho, tuned=False)


def _converged(reference: ode.ODEOptions) -> ode.ODEOptions:
    r = reference
    return ode.ODEOptions(r.solver, r.steps, r.rtol, r.atol, r.rho, tuned=False)
