"""Speed settings measured, not assumed: images/s of translation and training per kernel setting and thread count.

Each translation row also reports how far its outputs move from the fp32-eager ones (RMS / max in 8-bit
levels): a setting is only worth defaulting to where it is faster *and* that distance is well under a level.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..bridge import ode
from ..model.diffusion import Diffusion
from ..model.nets import build_network, unet_config
from ..model.speed import SpeedOptions, accelerate
from .translate import _rms_max, _sync

SETTINGS = [
    SpeedOptions(),
    SpeedOptions(channels_last=True),
    SpeedOptions(compile=True),
    SpeedOptions(channels_last=True, compile=True),
    SpeedOptions(bf16=True),
    SpeedOptions(fp16=True),
    SpeedOptions(tf32=True),  # CUDA only; ODE solves otherwise forbid TF32
    SpeedOptions(cuda_graphs=True),  # CUDA only
]
CUDA_ONLY = ("tf32", "cuda_graphs")


@dataclass
class SpeedRow:
    task: str
    setting: str
    threads: int
    batch_size: int
    images_per_s: float
    speedup: float
    first_call_s: float
    diff_rms: float | None
    diff_max: float | None
    device: str
    note: str = ""


def _failed(task: str, setting: SpeedOptions, threads: int, batch: int, device, exc: Exception) -> SpeedRow:
    # torch.compile needs a working C++ toolchain (CPU) or Triton (GPU); report instead of aborting the table.
    reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
    nan = float("nan")
    return SpeedRow(task, setting.describe(), threads, batch, nan, nan, nan, None, None, str(device), reason)


def _timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, float, torch.Tensor]:
    """(seconds of the first call — compilation included —, mean seconds of the next `repeats`, last output)."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    _sync(device)
    return first, (time.perf_counter() - t0) / repeats, out


def _sweep(
    task: str,
    settings: list[SpeedOptions],
    threads: list[int],
    batch: int,
    device: torch.device,
    measure: Callable[[SpeedOptions], tuple[float, float, float | None, float | None]],
    on_row: Callable[[SpeedRow], None] | None,
) -> list[SpeedRow]:
    """One row per (threads, setting): measure(setting) → (first call s, seconds per batch, diff RMS, diff max);
    speed-ups are against the first setting that ran at the same thread count; failures become rows."""
    before = torch.get_num_threads()
    rows: list[SpeedRow] = []
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            base_rate = None
            for setting in settings:
                try:
                    first, seconds, diff_rms, diff_max = measure(setting)
                except Exception as exc:  # noqa: BLE001 - any backend failure becomes a row
                    row = _failed(task, setting, n_threads, batch, device, exc)
                else:
                    rate = batch / seconds
                    base_rate = base_rate or rate
                    row = SpeedRow(task, setting.describe(), n_threads, batch, rate, rate / base_rate, first,
                                   diff_rms, diff_max, str(device))  # fmt: skip
                rows.append(row)
                if on_row:
                    on_row(row)
    finally:
        torch.set_num_threads(before)
    return rows


def bench_translate_speed(
    src: Diffusion,
    tgt: Diffusion,
    x: torch.Tensor,
    options: ode.ODEOptions,
    settings: list[SpeedOptions] = SETTINGS,
    threads: list[int] | None = None,
    repeats: int = 2,
    on_row: Callable[[SpeedRow], None] | None = None,
) -> list[SpeedRow]:
    """Translation images/s of batch x per (threads, setting); outputs compared with the first setting's first run."""
    device = x.device
    reference: list[torch.Tensor] = []

    def measure(setting: SpeedOptions):
        s, t = accelerate(src, setting), accelerate(tgt, setting)
        first, seconds, y = _timed(lambda: ode.translate(s, t, x, options), device, repeats)
        if not reference:  # fp32 eager at the first thread count, when it runs first
            reference.append(y)
        return first, seconds, *_rms_max(y, reference[0])

    on_device = lambda s: device.type == "cuda" or not any(getattr(s, n) for n in CUDA_ONLY)  # noqa: E731
    chosen = [s for s in settings if not (s.autocast and device.type == "mps") and on_device(s)]
    return _sweep("translate", chosen, threads or [torch.get_num_threads()], len(x), device, measure, on_row)


def bench_train_speed(
    size: str = "small",
    batch_size: int = 64,
    image_size: int = 32,
    device: torch.device | str = "cpu",
    settings: list[SpeedOptions] | None = None,
    threads: list[int] | None = None,
    iters: int = 3,
    on_row: Callable[[SpeedRow], None] | None = None,
) -> list[SpeedRow]:
    """Training images/s (forward, backward, AdamW) of one UNet size per (threads, setting), random data."""
    device = torch.device(device)
    # bf16 training is CUDA-only, fp16 training would need loss scaling (not built); training runs with PyTorch's
    # own precision defaults (TF32 convolutions on CUDA), so no tf32 row; CUDA graphs are an inference setting (a
    # training step's graph would hold the optimizer too).
    trains = lambda s: (not s.bf16 or device.type == "cuda") and not (s.fp16 or s.tf32 or s.cuda_graphs)  # noqa: E731
    settings = [s for s in (SETTINGS if settings is None else settings) if trains(s)]

    def measure(setting: SpeedOptions):
        torch.manual_seed(0)
        net = build_network(unet_config(size, image_size)).to(device)
        x = torch.randn(batch_size, 3, image_size, image_size, device=device)
        if setting.channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        model = Diffusion(net)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        loss_fn = torch.compile(model.loss) if setting.compile else model.loss

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
                loss = loss_fn(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        first, seconds, _ = _timed(step, device, iters)
        return first, seconds, None, None

    return _sweep("train", settings, threads or [torch.get_num_threads()], batch_size, device, measure, on_row)
