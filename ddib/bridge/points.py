"""DDIB on the paper's 2-D point domains: raw ↔ model coordinates, batched translation, cycle consistency.

Coordinates. A point model works in its domain's standardised space, x_model = (x_raw − mean) / std with
the scalar mean and std recorded in its config.json (see `ddib.data.points`). Point files and samples are
in raw coordinates: `translate_points` maps the input in with the *source* model's (mean, std) and the
output out with the *target* model's. Cycle-consistency distances are measured in the source model's
standardised space (as the official `synthetic_cycle.py`, whose data are normalised), where every domain has
mean 0 and std 1 over all coordinates, so numbers compare across domains.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.points import POINT_DOMAINS, raw_points
from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..model.registry import DomainModel, load_domain_model
from . import ode, pipeline
from .batching import batch_count, in_batches

# Points per ODE solve: where the per-point cost on CPU bottoms out (docs/points-2d.md).
DEFAULT_POINT_BATCH = 16_384
# The pairs of the paper's cycle-consistency figure ("↔": both directions).
PAPER_PAIRS: list[tuple[str, str]] = [
    ("moons", "checkerboards"), ("checkerboards", "moons"),
    ("checkerboards", "rings"), ("rings", "checkerboards"),
    ("squares", "olympic-squares"), ("olympic-squares", "squares"),
    ("moons", "squares"),
]  # fmt: skip
TABLE_SETTINGS: list[ode.ODEOptions] = [
    ode.ODEOptions("ddim", steps=1000),  # the official DDIB sampler and step count
    ode.ODEOptions(ode.DEFAULT_SOLVER, steps=ode.DEFAULT_STEPS),
]


def require_points(point: DomainModel) -> DomainModel:
    """The model of a 2-D point domain, with its recorded standardisation; refuses anything else."""
    cfg = point.config
    if cfg.model.kind != "mlp" or cfg.domain.get("kind") != "points":
        raise DDIBError(
            f"{point.name} is not a 2-D point domain (its model takes {tuple(cfg.model.data_shape)} inputs); "
            f"point domains are {', '.join(POINT_DOMAINS)}"
        )
    point.standardisation  # noqa: B018 (checks the recorded mean and std)
    if cfg.domain.get("name") not in POINT_DOMAINS:
        raise DDIBError(f"the {point.name} model was trained on unknown point data {cfg.domain.get('name')!r}")
    return point


def load_point_model(name: str, models_dir: str | Path | None = None, device="cpu") -> DomainModel:
    return require_points(load_domain_model(name, models_dir, device))


def test_points(point: DomainModel, n: int, seed: int = 0) -> torch.Tensor:
    """n fresh points of the domain (the generator's test split), in its model's space."""
    return point.to_model(raw_points(point.config.domain["name"], n, seed, split="test"))


test_points.__test__ = False  # not a pytest test, despite its name


def encode_points(
    model: Diffusion, x: torch.Tensor, opts: ode.ODEOptions, stats=None, batch_size=DEFAULT_POINT_BATCH
) -> torch.Tensor:
    (latent,) = pipeline.collect(pipeline.encode_batches(model, x, opts, batch_size or len(x), stats=stats))
    return latent.z


def decode_points(
    model: Diffusion, z: torch.Tensor, opts: ode.ODEOptions, stats=None, batch_size=DEFAULT_POINT_BATCH
) -> torch.Tensor:
    return pipeline.collect(pipeline.decode_batches(model, z, opts, batch_size or len(z), stats=stats))[0]


@dataclass
class PointTranslation:
    latent: torch.Tensor  # source model space = VP latent, ≈ N(0, I)
    output: torch.Tensor  # target model space
    output_raw: np.ndarray  # target raw coordinates
    nfe_per_point: float  # encode + decode
    seconds: float


def translate_points(
    src: DomainModel,
    tgt: DomainModel,
    raw: np.ndarray,
    opts: ode.ODEOptions = ode.ODEOptions(),
    batch_size: int | None = DEFAULT_POINT_BATCH,
) -> PointTranslation:
    """Raw source-domain points → raw target-domain points through the bridge (DDIB Alg. 1)."""
    ode.check_compatible(src.diffusion, tgt.diffusion)
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    x = src.to_model(raw)
    batches = pipeline.translate_batches(src.diffusion, tgt.diffusion, x, opts, batch_size or len(x), stats=stats)
    latent, y = pipeline.collect(batches)
    z = latent.z
    seconds = time.perf_counter() - t0
    batches = batch_count(len(x), batch_size or len(x))
    return PointTranslation(z, y, tgt.to_raw(y), stats.nfe / batches, seconds)


def sample_points(
    model: Diffusion,
    n: int,
    seed: int = 0,
    opts: ode.ODEOptions = ode.ODEOptions(),
    stats: ode.SolveStats | None = None,
    batch_size: int | None = DEFAULT_POINT_BATCH,
) -> torch.Tensor:
    """n samples in the model's space: z ~ N(0, I) drawn at once (independent of batch size), then decoded."""
    z = torch.randn((n, *model.data_shape), generator=torch.Generator().manual_seed(seed))
    return decode_points(model, z, opts, stats, batch_size)


@dataclass
class CycleResult:
    """A → B → A: L2 distance between each point and its cycled self, in A's standardised model space."""

    n: int
    solver: str
    steps: str
    nfe_per_point: int  # all four solves: encode A, decode B, encode B, decode A
    mean_l2: float
    median_l2: float
    max_l2: float
    seconds: float
    seconds_per_eval: float  # one network evaluation on all n points

    def to_dict(self) -> dict:
        return asdict(self)


def cycle_consistency(
    src: Diffusion,
    tgt: Diffusion,
    x: torch.Tensor,
    opts: ode.ODEOptions = ode.ODEOptions(),
    batch_size: int | None = DEFAULT_POINT_BATCH,
) -> CycleResult:
    """Translate x (source model space) A → B → A and measure how far each point lands from where it began."""
    ode.check_compatible(src, tgt)
    opts = ode.resolve_steps(opts, src, tgt)
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    y = decode_points(tgt, encode_points(src, x, opts, stats, batch_size), opts, stats, batch_size)
    back = decode_points(src, encode_points(tgt, y, opts, stats, batch_size), opts, stats, batch_size)
    seconds = time.perf_counter() - t0
    d = (back.double() - x.double()).norm(dim=1)
    batches = batch_count(len(x), batch_size or len(x))
    nfe = round(stats.nfe / batches)
    steps = str(opts.steps) if opts.is_fixed else f"tol {opts.rtol:g}"
    return CycleResult(len(x), opts.solver, steps, nfe, d.mean().item(), d.median().item(), d.max().item(),
                       seconds, seconds / max(1, nfe))  # fmt: skip


@dataclass
class CycleRow:
    source: str
    target: str
    solver: str
    steps: str
    n: int
    nfe_per_point: int
    mean_l2: float
    median_l2: float
    max_l2: float
    seconds: float
    ms_per_eval: float


def cycle_table(
    load: Callable[[str], DomainModel],
    pairs: list[tuple[str, str]] | None = None,
    settings: list[ode.ODEOptions] | None = None,
    n: int = 2000,
    seed: int = 0,
    batch_size: int | None = DEFAULT_POINT_BATCH,
    on_row: Callable[[CycleRow], None] | None = None,
) -> list[CycleRow]:
    """Cycle consistency of every pair under every solver setting, on n fresh test points of each source."""
    models: dict[str, DomainModel] = {}

    def get(name: str) -> DomainModel:
        if name not in models:
            models[name] = load(name)
        return models[name]

    rows = []
    for a, b in pairs or PAPER_PAIRS:
        src, tgt = get(a), get(b)
        x = test_points(src, n, seed)
        for opts in settings or TABLE_SETTINGS:
            r = cycle_consistency(src.diffusion, tgt.diffusion, x, opts, batch_size)
            row = CycleRow(a, b, r.solver, r.steps, r.n, r.nfe_per_point, r.mean_l2, r.median_l2, r.max_l2,
                           r.seconds, 1000 * r.seconds_per_eval)  # fmt: skip
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def time_one_eval(model: Diffusion, n: int, batch_size: int | None = DEFAULT_POINT_BATCH, repeats: int = 2) -> float:
    """Seconds for one network evaluation on n points (in chunks of batch_size), after a warm-up."""
    dev = next(model.parameters()).device
    x = torch.randn(n, *model.data_shape)
    t = torch.tensor(0.5)

    def run():
        with torch.no_grad():
            in_batches(lambda c: model.eps(c, t), x, batch_size or len(x), dev)

    run()
    t0 = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - t0) / repeats
