"""Benchmarks that print numbers: training throughput per model size, and solver accuracy vs cost for DDIB.

Numbers are measured, never asserted: the CLI writes them as Markdown + CSV for the README's tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from . import ode
from .diffusion import Diffusion
from .nets import UNET_SIZES, build_network, unet_config

# Pixel errors are reported in 8-bit grey levels: RMS over [-1, 1] pixels × 127.5.
LEVELS = 127.5

# (solver, steps) rows of the solver benchmark; the official DDIB setting is ddim × 1000.
TRANSLATE_GRID: list[tuple[str, int]] = [
    ("ddim", 1000),
    ("ddim", 10), ("ddim", 20), ("ddim", 50), ("ddim", 100),
    ("euler", 10), ("euler", 20), ("euler", 50),
    ("midpoint", 5), ("midpoint", 10), ("midpoint", 20),
    ("heun2", 5), ("heun2", 10), ("heun2", 20),
    ("heun3", 4), ("heun3", 7),
    ("rk4", 3), ("rk4", 5), ("rk4", 10),
]  # fmt: skip
ADAPTIVE_GRID: list[tuple[str, float]] = [("dopri5", 1e-3), ("dopri5", 1e-4)]
REFERENCE = ode.ODEOptions("dopri5", rtol=1e-5, atol=1e-5)


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
    nfe_encode: int
    nfe_decode: int
    images_per_s: float
    round_trip_rms: float
    round_trip_max: float
    to_reference_rms: float
    to_reference_max: float


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rms_max(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a.double() - b.double()) * LEVELS
    return d.pow(2).mean().sqrt().item(), d.abs().max().item()


def bench_solvers(
    src: Diffusion,
    tgt: Diffusion,
    x: torch.Tensor,
    grid: list[tuple[str, int]] | None = None,
    adaptive: list[tuple[str, float]] | None = None,
    reference_options: ode.ODEOptions = REFERENCE,
    on_row: Callable[[SolverBenchRow], None] | None = None,
) -> list[SolverBenchRow]:
    """For each solver setting: NFE, images/s, round trip x → src → x error, distance to the reference translation."""
    reference = ode.translate(src, tgt, x, reference_options)
    settings = [ode.ODEOptions(s, steps=n) for s, n in (grid or TRANSLATE_GRID)]
    settings += [ode.ODEOptions(s, rtol=tol, atol=tol) for s, tol in (adaptive or ADAPTIVE_GRID)]
    rows = []
    for opts in settings:
        enc, dec = ode.SolveStats(), ode.SolveStats()
        _sync(x.device)
        t0 = time.perf_counter()
        z = ode.encode(src, x, opts, enc)
        y = ode.decode(tgt, z, opts, dec)
        _sync(x.device)
        seconds = time.perf_counter() - t0
        back = ode.decode(src, z, opts)
        rt_rms, rt_max = _rms_max(back, x)
        ref_rms, ref_max = _rms_max(y, reference)
        steps = str(opts.steps) if opts.is_fixed else f"tol {opts.rtol:g}"
        row = SolverBenchRow(
            opts.solver, steps, enc.nfe, dec.nfe, len(x) / seconds, rt_rms, rt_max, ref_rms, ref_max
        )
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


def to_markdown(rows: list, floats: str = ".3g") -> str:
    """A Markdown table of dataclass rows."""
    if not rows:
        return ""
    dicts = [asdict(r) for r in rows]
    keys = list(dicts[0])
    fmt = lambda v: format(v, floats) if isinstance(v, float) else str(v)  # noqa: E731
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
