"""Batches: the batch size of ODE solves (the largest power of two whose measured memory fits the device), and
running a function over a tensor in batches."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import torch

from ..model.diffusion import Diffusion

# CPU: throughput stops growing well before memory binds (small UNets need a few MiB per image), so the size is
# the plateau measured by `ddib bench throughput` for 32×32 images; larger images hold as many pixels per batch,
# since a 256×256 UNet already needs hundreds of MiB per image and keeps the cores busy with one. GPUs: as large as
# memory allows, up to MAX_BATCH.
CPU_BATCH = 64
SMALL_PIXELS = 32 * 32
AUTO_BATCH = f"{CPU_BATCH} on CPU, fewer for images over 32×32; memory-fitted on GPU"  # for --batch-size's help
MAX_BATCH = 1024
# Tensors an ODE solve keeps per image besides the network's activations: state, stages, error estimate, output.
SOLVER_COPIES = 12


def fitting_batch(fixed_bytes: float, per_item_bytes: float, free_bytes: float, fraction: float = 0.7,
                  cap: int = MAX_BATCH) -> int:  # fmt: skip
    """Largest power of two b ≤ cap with fixed + b·per_item ≤ fraction·free (at least 1)."""
    budget = fraction * free_bytes - max(fixed_bytes, 0.0)
    b = 1
    while b * 2 <= cap and (b * 2) * per_item_bytes <= budget:
        b *= 2
    return b


@torch.no_grad()
def measure_cuda_memory(model: Diffusion, device: torch.device, probe: int = 8) -> tuple[float, float]:
    """(fixed, per-image) bytes of one network evaluation, from peak allocations at batch 1 and `probe`."""
    peaks = []
    for b in (1, probe):
        x = torch.randn((b, *model.data_shape), device=device)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        model.eps(x, torch.full((b,), 0.5, device=device))
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del x
    per_item = (peaks[1] - peaks[0]) / (probe - 1)
    state = 4 * SOLVER_COPIES * torch.Size(model.data_shape).numel()
    return peaks[0] - per_item, per_item + state


def auto_batch_size(models: list[Diffusion], device: torch.device, n_items: int) -> int:
    """Batch size for solving n_items: memory-fitted on CUDA (the hungrier model decides); elsewhere CPU_BATCH images
    of 32×32, or as many larger ones as hold their pixels (`pixel_batch`)."""
    if device.type == "cuda":
        measured = [measure_cuda_memory(m, device) for m in models]
        fixed = max(f for f, _ in measured)
        per_item = max(p for _, p in measured)
        free, _ = torch.cuda.mem_get_info(device)
        size = fitting_batch(fixed, per_item, free)
    else:
        size = pixel_batch(models, CPU_BATCH)
    return max(1, min(size, n_items))


def pixel_batch(models: list[Diffusion], base: int) -> int:
    """`base` images of 32×32 or smaller, else as many as hold the pixels of `base` such images (at least one): the
    largest data of the models decides."""
    pixels = max(math.prod(m.data_shape[1:]) if len(m.data_shape) == 3 else 1 for m in models)
    return max(1, min(base, base * SMALL_PIXELS // pixels))


def batch_count(n: int, batch_size: int) -> int:
    """Batches of at most batch_size covering n items (a solve's NFE counts once per batch)."""
    return max(1, -(-n // batch_size))


def chunks(x, batch_size: int) -> Iterator:
    """Consecutive slices of x (a tensor or a list) of at most batch_size items."""
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def in_batches(fn: Callable[..., torch.Tensor], x: torch.Tensor, batch_size: int,
               device: torch.device | str | None = None, on_batch: Callable[[int], None] | None = None,
               aligned: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """fn over consecutive batches of x (moved to `device`), concatenated on the CPU; on_batch(k) after each.

    With `aligned` (one entry per item of x, e.g. hue-quotient hues), fn(batch, aligned batch) instead."""
    out = []
    extras = itertools.repeat(None) if aligned is None else chunks(aligned, batch_size)
    for chunk, extra in zip(chunks(x, batch_size), extras, strict=False):  # (repeat never ends)
        args = [t if device is None else t.to(device) for t in (chunk, extra) if t is not None]
        out.append(fn(*args).cpu())
        if on_batch:
            on_batch(len(chunk))
    return torch.cat(out)
