"""Batched DDIB over many images: encode, decode and translate (Su et al. 2023, Alg. 1) batch by batch on the models'
device, results on the CPU, with a progress callback after every network evaluation (the library never prints)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..model.speed import FastNet
from . import ode
from .batching import auto_batch_size
from .latent import Latent


@dataclass(frozen=True)
class Progress:
    """Where a batched call stands: items finished of the total, network evaluations so far (one evaluation covers
    a batch) and those of the batch under way, of `per_batch` expected (None for adaptive solvers)."""

    done: int
    total: int
    nfe: int
    batch_nfe: int
    per_batch: int | None


ProgressFn = Callable[[Progress], None]


def per_batch(on_batch: Callable[[int], None] | None) -> ProgressFn | None:
    """A ProgressFn that calls on_batch(k) with the k items of each finished batch (for counting displays)."""
    if on_batch is None:
        return None
    seen = [0]

    def hook(p: Progress) -> None:
        if p.done > seen[0]:
            on_batch(p.done - seen[0])
            seen[0] = p.done

    return hook


class _Tracker:
    """Counts evaluations into a SolveStats and reports each, and each finished batch, to a ProgressFn."""

    def __init__(self, total: int, per_batch: int | None, progress: ProgressFn | None, stats: ode.SolveStats | None):
        self.total, self.per_batch, self.progress = total, per_batch, progress
        self.stats = stats if stats is not None else ode.SolveStats()
        self.done = self.nfe = self.batch_nfe = 0
        if progress is not None:
            self.stats.on_evaluation = self._evaluated

    def _evaluated(self) -> None:
        self.nfe += 1
        self.batch_nfe += 1
        self._report()

    def finished(self, items: int) -> None:
        self.done += items
        self._report()
        self.batch_nfe = 0

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(Progress(self.done, self.total, self.nfe, self.batch_nfe, self.per_batch))


def _per_batch(options: ode.ODEOptions, solves: int) -> int | None:
    return ode.expected_nfe(options) * solves if options.is_fixed else None


def _spans(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _device(model: Diffusion) -> torch.device:
    return next(model.parameters()).device


def _size(batch_size: int | None, models: list[Diffusion], n: int) -> int:
    return batch_size or auto_batch_size(models, _device(models[0]), max(n, 1))


def _finite(x: torch.Tensor, what: str, model: Diffusion) -> torch.Tensor:
    """x, unless a solve overflowed or diverged: non-finite values would be written as black or white images."""
    bad = ~torch.isfinite(x.flatten(1)).all(1)
    if bool(bad.any()):
        fp16 = what == "decode" and isinstance(model.net, FastNet) and model.net.options.fp16  # encodes run fp32
        why = ("float16 overflowed (values past 65504): decode with --bf16 or in fp32" if fp16 else
               "the model's output diverges: check its weights and schedule, or solve with more steps")  # fmt: skip
        raise DDIBError(f"the {what} gave NaN or inf for {int(bad.sum())} of {len(x)} images; {why}")
    return x


def encode_batches(model: Diffusion, x: torch.Tensor, options: ode.ODEOptions = ode.ODEOptions(),
                   batch_size: int | None = None, progress: ProgressFn | None = None,
                   stats: ode.SolveStats | None = None) -> Iterator[tuple[slice, Latent]]:  # fmt: skip
    """(span of x, its Latent on the CPU) per batch: z = encode(model, x) with what travels beside it."""
    options = ode.resolve_steps(options, model)
    size = _size(batch_size, [model], len(x))
    track = _Tracker(len(x), _per_batch(options, 1), progress, stats)
    dev = _device(model)
    for span in _spans(len(x), size):
        latent = ode.encode_latent(model, x[span].to(dev), options, track.stats).cpu()
        _finite(latent.z, "encode", model)
        track.finished(len(latent))
        yield span, latent


def decode_batches(model: Diffusion, latent: Latent | torch.Tensor, options: ode.ODEOptions = ode.ODEOptions(),
                   batch_size: int | None = None, progress: ProgressFn | None = None,
                   stats: ode.SolveStats | None = None) -> Iterator[tuple[slice, torch.Tensor]]:  # fmt: skip
    """(span of the latent, its images on the CPU) per batch: x = decode(model, z), turned to the latent's hues."""
    latent = latent if isinstance(latent, Latent) else Latent(latent)
    options = ode.resolve_steps(options, model)
    size = _size(batch_size, [model], len(latent))
    track = _Tracker(len(latent), _per_batch(options, 1), progress, stats)
    dev = _device(model)
    for span in _spans(len(latent), size):
        y = _finite(ode.decode(model, latent[span].to(dev), options, track.stats).cpu(), "decode", model)
        track.finished(len(y))
        yield span, y


def translate_batches(source: Diffusion, target: Diffusion, x: torch.Tensor,
                      options: ode.ODEOptions = ode.ODEOptions(), batch_size: int | None = None,
                      progress: ProgressFn | None = None,
                      stats: ode.SolveStats | None = None) -> Iterator[tuple[slice, Latent, torch.Tensor]]:  # fmt: skip
    """(span of x, its Latent, its translation), both on the CPU, per batch: decode(target, encode(source, x)),
    the two ends meeting at the largest σ̄ both reach (`ode.bridge_ends`) with one step count for both."""
    source, target = ode.bridge_ends(source, target)
    options = ode.resolve_steps(options, source, target)
    size = _size(batch_size, [source, target], len(x))
    track = _Tracker(len(x), _per_batch(options, 2), progress, stats)
    dev = _device(source)
    for span in _spans(len(x), size):
        latent = ode.encode_latent(source, x[span].to(dev), options, track.stats)
        _finite(latent.z, "encode", source)
        y = _finite(ode.decode(target, latent.to(_device(target)), options, track.stats).cpu(), "decode", target)
        track.finished(len(y))
        yield span, latent.cpu(), y


def collect(batches: Iterator[tuple]) -> tuple:
    """Join a batch iterator's per-batch results (tensors or Latents) into whole ones, dropping the spans."""
    parts = [b[1:] for b in batches]
    if not parts:
        raise ValueError("nothing to collect: no items")
    joined = []
    for column in zip(*parts, strict=True):
        joined.append(Latent.cat(list(column)) if isinstance(column[0], Latent) else torch.cat(column))
    return tuple(joined)
