"""Benchmarks that print numbers: training throughput per model size, and solver accuracy vs cost for DDIB.

Numbers are measured, never asserted: the CLI writes them as Markdown + CSV tables into bench/.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..bridge import ode, presets
from ..bridge.grids import grid_name
from ..errors import DDIBError
from ..evaluation.metrics import LEVELS, rms_levels
from ..model.diffusion import Diffusion
from ..model.nets import UNET_SIZES, build_network, unet_config

OFFICIAL = ("ddim", 1000)  # the official DDIB sampler and step count, the baseline row

# (solver, steps[, ρ | "tuned"]) rows of the solver benchmark; the official DDIB setting is ddim × 1000. ρ = ∞ is the
# grid uniform in log-SNR (DPM-Solver's); without ρ each solver uses its default grid (`SolverSpec.rho`); "tuned"
# uses the models' tuned grids (`ddib tune-solver`).
TRANSLATE_GRID: list[tuple] = [
    OFFICIAL,
    ("ddim", 10), ("ddim", 20), ("ddim", 50), ("ddim", 100),
    ("euler", 10), ("euler", 20), ("euler", 50),
    ("midpoint", 5), ("midpoint", 10), ("midpoint", 20),
    ("heun2", 5), ("heun2", 10), ("heun2", 20),
    ("heun3", 4), ("heun3", 7),
    ("rk4", 3), ("rk4", 5), ("rk4", 10),
    ("midpoint", 5, math.inf), ("midpoint", 10, math.inf), ("midpoint", 20, math.inf), ("rk4", 5, math.inf),
    ("dpm2m", 10), ("dpm2m", 20), ("dpm2m", 40), ("dpm2m", 20, 7.0),
    ("unipc", 10), ("unipc", 20), ("unipc", 40), ("unipc", 20, 7.0),
]  # fmt: skip
ADAPTIVE_GRID: list[tuple[str, float]] = [("dopri5", 1e-3), ("dopri5", 1e-4)]
# The converged solve that solver rows are measured against. Not rtol = atol = 1e-5: encoding amplifies local errors
# along directions the data never varies in (MNIST's blank border) by up to σ̄_max/σ̄_min-fold, so a 1e-5 solve can
# sit levels away from a tighter one (docs/solvers.md); `--reference` picks another, and the table's header says how
# converged the reference is.
REFERENCE = ode.ODEOptions("dopri5", rtol=1e-6, atol=1e-6)


def parse_reference(spec: str) -> ode.ODEOptions:
    """`SOLVER:STEPS` (fixed-step, e.g. `unipc:200`) or `SOLVER:TOL` (adaptive, rtol = atol, e.g. `dopri5:1e-6`)."""
    solver, _, budget = spec.partition(":")
    try:
        if solver in ode.FIXED_SOLVERS:
            return ode.ODEOptions(solver, steps=int(budget))
        if solver in ode.ADAPTIVE_SOLVERS:
            return ode.ODEOptions(solver, rtol=float(budget), atol=float(budget))
    except (ValueError, DDIBError):  # a budget that is no number, or no positive one
        pass
    raise DDIBError(
        f"--reference {spec!r}: give SOLVER:STEPS for a fixed-step solver (e.g. unipc:200) "
        f"or SOLVER:TOL for an adaptive one (e.g. dopri5:1e-6)"
    )


def coarser(options: ode.ODEOptions) -> ode.ODEOptions:
    """The same solve at half the budget (half the steps, or a 10× looser tolerance). Its distance from the reference
    estimates the half-budget solve's error; a convergent reference is closer to the exact solution than that."""
    if options.is_fixed:
        return dataclasses.replace(options, steps=max(1, options.steps // 2))
    return dataclasses.replace(options, rtol=options.rtol * 10, atol=options.atol * 10)


@dataclass
class Reference:
    """The converged translation solver rows are measured against, and how converged it is: the RMS / max distance
    (8-bit levels) of the same solve at half the budget (`coarser`), None where not checked."""

    options: ode.ODEOptions
    latent: ode.Latent
    translation: torch.Tensor
    check_rms: float | None = None
    check_max: float | None = None

    def describe(self) -> str:
        if self.check_rms is None:
            return self.options.describe()
        return (
            f"{self.options.describe()}, {self.check_rms:.3g} levels RMS ({self.check_max:.3g} max) from the same "
            f"solve at {coarser(self.options).describe()}"
        )


def reference_solve(src: Diffusion, tgt: Diffusion, x: torch.Tensor, options: ode.ODEOptions = REFERENCE,
                    check: bool = False) -> Reference:  # fmt: skip
    """Translate x with the reference solver; with `check`, also at half its budget to measure its convergence."""
    latent = ode.encode_latent(src, x, options)
    translation = ode.decode(tgt, latent, options)
    if not check:
        return Reference(options, latent, translation)
    half = ode.translate(src, tgt, x, coarser(options))
    return Reference(options, latent, translation, *_rms_max(half, translation))


@dataclass
class TrainBenchRow:
    model_size: str
    parameters: int
    batch_size: int
    device: str
    threads: int
    images_per_s: float


@dataclass
class SolverBenchRow:
    solver: str
    steps: str
    grid: str
    nfe_encode: int
    nfe_decode: int
    images_per_s: float
    speedup_vs_baseline: float
    round_trip_rms: float
    round_trip_max: float
    to_reference_rms: float
    to_reference_max: float
    to_reference_median_image: float
    images_over_1_level: float
    to_reference_rms_but_worst: float | None  # over every image but the farthest (None for a single image)
    latent_to_reference_rms: float
    decode_only_to_reference_rms: float
    cycle_rms: float | None = None
    cycle_max: float | None = None
    target_accuracy: float | None = None
    source_share: float | None = None
    hue_error_median: float | None = None
    hue_error_p90: float | None = None
    cycle_source_accuracy: float | None = None
    frechet_distance: float | None = None


# The `ddib evaluate` metrics a solver row can carry (all but the cycle error, which the row has in 8-bit levels).
SCORE_FIELDS = ("target_accuracy", "source_share", "hue_error_median", "hue_error_p90", "cycle_source_accuracy",
                "frechet_distance")  # fmt: skip


@dataclass
class ThroughputRow:
    batch_size: int
    solver: str
    nfe_per_image: int
    images_per_s: float
    peak_memory_mb: float | None
    device: str


@dataclass
class ComparedThroughputRow:
    pair: str
    solve: str
    averaging: str
    batch_size: int
    nfe_per_image: int
    images_per_s: float
    vs_baseline: float | None
    device: str


def preset_solves(solver: str, *models: Diffusion) -> list[tuple[ode.ODEOptions, str]]:
    """(options, 'fast, default presets') for each distinct solve among the quality presets the models store for
    `solver` (`default` always: without a stored one, the models' own default solve)."""
    found: dict[tuple, list[str]] = {}
    for name in presets.QUALITIES:
        try:
            solved = ode.resolve_steps(ode.ODEOptions(solver, quality=name), *models)
        except DDIBError:  # a preset the models do not store
            continue
        found.setdefault((solved.steps, solved.tuned), []).append(name)
    return [(ode.ODEOptions(solver, steps=steps, tuned=tuned), ", ".join(names) + (" presets" if len(names) > 1
             else " preset")) for (steps, tuned), names in found.items()]  # fmt: skip


def bench_train(
    sizes: list[str] | None = None,
    batch_size: int = 64,
    image_size: int = 32,
    device: torch.device | str = "cpu",
    iters: int = 5,
    warmup: int = 2,
    on_row: Callable[[TrainBenchRow], None] | None = None,
) -> list[TrainBenchRow]:
    """Training images/s (forward, backward, AdamW step) of each UNet size on random data."""
    device = torch.device(device)
    rows = []
    for size in sizes or list(UNET_SIZES):
        net = build_network(unet_config(size, image_size)).to(device)
        model = Diffusion(net)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        x = torch.randn(batch_size, 3, image_size, image_size, device=device)
        for i in range(warmup + iters):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            loss = model.loss(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        rate = iters * batch_size / (time.perf_counter() - t0)
        row = TrainBenchRow(size, sum(p.numel() for p in net.parameters()), batch_size, str(device),
                            torch.get_num_threads(), rate)  # fmt: skip
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def peak_rss_mb() -> float | None:
    """This process's peak resident set size in MiB (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if not sys.platform == "darwin" else kib / 2**20  # macOS reports bytes


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rms_max(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    return rms_levels(a, b), LEVELS * (a.double() - b.double()).abs().max().item()


def per_image_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Each image's RMS distance in 8-bit levels: where a batch's RMS comes from (a few images, or all of them)."""
    return ((a.double() - b.double()) * LEVELS).pow(2).flatten(1).mean(1).sqrt()


def bench_solvers(
    src: Diffusion,
    tgt: Diffusion,
    x: torch.Tensor,
    grid: list[tuple] | None = None,
    adaptive: list[tuple[str, float]] | None = None,
    reference: ode.ODEOptions | Reference = REFERENCE,
    on_row: Callable[[SolverBenchRow], None] | None = None,
    score: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], dict] | None = None,
    cycle: bool = True,
) -> list[SolverBenchRow]:
    """For each solver setting: NFE, images/s, round trip x → src → x error, distance to the reference translation
    (RMS, max, median image, share of images over 1 level; of its latent; of a decode of the reference latent), and
    (with `cycle`) the error of the translation back with the swapped models, src → tgt → src.

    The first setting is the baseline that `speedup_vs_baseline` divides by (the official ddim × 1000).
    `score(sources, outputs, cycled)` adds the `ddib evaluate` metrics named in SCORE_FIELDS (missing keys → None).
    """
    src, tgt = ode.bridge_ends(src, tgt)
    if isinstance(reference, ode.ODEOptions):
        reference = reference_solve(src, tgt, x, reference)
    latent_ref, reference = reference.latent, reference.translation
    grid = TRANSLATE_GRID if grid is None else grid
    adaptive = ADAPTIVE_GRID if adaptive is None else adaptive
    settings = [_fixed_setting(entry) for entry in grid]
    settings += [ode.ODEOptions(s, rtol=tol, atol=tol) for s, tol in adaptive]
    rows: list[SolverBenchRow] = []
    for opts in settings:
        enc, dec = ode.SolveStats(), ode.SolveStats()
        _sync(x.device)
        t0 = time.perf_counter()
        z = ode.encode_latent(src, x, opts, enc)  # with the hue a hue-quotient latent carries beside it
        y = ode.decode(tgt, z, opts, dec)
        _sync(x.device)
        seconds = time.perf_counter() - t0
        back = ode.decode(src, z, opts)
        rt_rms, rt_max = _rms_max(back, x)
        ref_rms, ref_max = _rms_max(y, reference)
        # A batch RMS hides whether the error is spread thin or lands on a few images near a decision boundary.
        per_image = per_image_rms(y, reference)
        median_image, over_1 = per_image.quantile(0.5).item(), (per_image > 1.0).double().mean().item()
        squares = per_image.double().square()
        but_worst = ((squares.sum() - squares.max()) / (len(squares) - 1)).sqrt().item() if len(squares) > 1 else None
        # Which half of the bridge the distance comes from: the latent (z ≈ N(0, I) units) and a decode alone.
        latent_rms = (z.z.double() - latent_ref.z.double()).pow(2).mean().sqrt().item()
        decode_only_rms, _ = _rms_max(ode.decode(tgt, latent_ref, opts), reference)
        cycled = ode.translate(tgt, src, y, opts) if cycle else None
        cyc_rms, cyc_max = _rms_max(cycled, x) if cycle else (None, None)
        steps = str(opts.steps) if opts.is_fixed else f"tol {opts.rtol:g}"
        grid_kind = "uniform t" if opts.spec.uniform_t else grid_name(opts.rho) if opts.is_fixed else "adaptive"
        if opts.tuned:
            grid_kind = "tuned" if ode.uses_tuned_grid(opts, src, tgt) else f"{grid_kind} (no tuned grid)"
            if "coefficients" in ode.describe_solve(opts, src, tgt):
                grid_kind = "tuned + coefficients"
        rate = len(x) / seconds
        speedup = rate / rows[0].images_per_s if rows else 1.0
        scores = score(x, y, cycled) if score else {}
        row = SolverBenchRow(opts.solver, steps, grid_kind, enc.nfe, dec.nfe, rate, speedup, rt_rms, rt_max, ref_rms,
                             ref_max, median_image, over_1, but_worst, latent_rms, decode_only_rms, cyc_rms, cyc_max,
                             **{k: scores.get(k) for k in SCORE_FIELDS})  # fmt: skip
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def bench_throughput(
    src: Diffusion,
    tgt: Diffusion,
    x: torch.Tensor,
    opts: ode.ODEOptions,
    batch_sizes: list[int] = (1, 16, 256),
    repeats: int = 1,
    on_row: Callable[[ThroughputRow], None] | None = None,
    compiled: bool = False,
) -> list[ThroughputRow]:
    """Translation images/s at each batch size (inputs tiled from x) and peak memory: CUDA allocations, or on CPU
    the process's peak resident set (a high-water mark, so batch sizes are best given in increasing order).
    `compiled` networks warm up on the whole batch, the shape they compile (and record CUDA graphs) for."""
    rows = []
    device = x.device
    for b in batch_sizes:
        batch = x.repeat((b + len(x) - 1) // len(x), *([1] * (x.ndim - 1)))[:b]
        ode.translate(src, tgt, batch if compiled else batch[:1], opts)  # warm-up (allocator, kernels)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        stats = ode.SolveStats()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            ode.translate(src, tgt, batch, opts, stats)
        _sync(device)
        rate = repeats * b / (time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()
        row = ThroughputRow(b, ode.describe_solve(opts, src, tgt), stats.nfe // repeats, rate, peak, str(device))
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def _fixed_setting(entry: tuple) -> ode.ODEOptions:
    """A fixed-step row: (solver, steps), (solver, steps, ρ) or (solver, steps, "tuned") for the models' tuned grids."""
    solver, steps, *extra = entry
    if extra and extra[0] == "tuned":
        return ode.ODEOptions(solver, steps=steps, tuned=True)
    return ode.ODEOptions(solver, steps=steps, rho=extra[0] if extra else None, tuned=False)


def solver_chart(rows: list[SolverBenchRow], title: str):
    """Distance to the reference vs NFE per direction, one line per solver, with the 1/255 goal line."""
    from ..io.charts import loglog_chart

    series: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        official = (r.solver, r.steps) == (OFFICIAL[0], str(OFFICIAL[1]))
        name = f"{r.solver} x{r.steps} (official)" if official else r.solver
        name += (
            " (log-SNR grid)" if r.grid == grid_name(math.inf) else f" ({r.grid})" if r.grid.startswith("tuned") else ""
        )
        series.setdefault(name, []).append((max(1, (r.nfe_encode + r.nfe_decode) / 2), max(r.to_reference_rms, 1e-4)))
    return loglog_chart(series, title, "NFE per direction", "RMS to reference (8-bit levels)", hline=(1.0, "1/255"))


def to_markdown(rows: list, floats: str = ".3g") -> str:
    """A Markdown table of dataclass rows."""
    if not rows:
        return ""
    dicts = [asdict(r) for r in rows]
    keys = list(dicts[0])
    fmt = lambda v: format(v, floats) if isinstance(v, float) else "n/a" if v is None else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(d[k]) for k in keys) + " |" for d in dicts]
    return "\n".join(lines) + "\n"


def to_csv(rows: list) -> str:
    import csv
    import io

    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(asdict(rows[0])))
    writer.writeheader()
    for r in rows:
        writer.writerow(asdict(r))
    return buf.getvalue()
