"""Decoding latents shared across torchrun's processes, as `ddib sample` and `ddib decode` do: each process decodes
its share with a progress bar and writes its files; the first process gathers the images, in order, for a grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..bridge import ode, pipeline
from ..bridge.batching import batch_count
from ..bridge.latent import Latent
from ..io.images import save_png, to_pil
from ..model.diffusion import Diffusion
from ..train import distributed
from .progress import bar


def decode_shared(fast: Diffusion, latent: Latent, opts: ode.ODEOptions, batch_size: int, stats: ode.SolveStats,
                  info: distributed.DistInfo, title: str, task: str, out_dir: Path | None,
                  file_name: Callable[[int], str]) -> tuple[list[torch.Tensor] | None, float]:  # fmt: skip
    """(every image in order on the first process when there is no --out-dir, else None; NFE per image of this
    process's batches). Latent i is written as `out_dir / file_name(i)` by the process that decodes it."""
    indices = distributed.shard(list(range(len(latent.z))), info)
    with bar(title) as progress:
        shown = progress.add_task(task, total=len(latent.z), visible=info.is_main)
        on_progress = lambda p: progress.update(shown, completed=p.done * info.world_size)  # noqa: E731
        batches = pipeline.decode_batches(fast, latent[indices], opts, batch_size, on_progress, stats)
        x = pipeline.collect(batches)[0] if indices else torch.empty(0, *fast.data_shape)
    if out_dir is not None:
        for i, img in zip(indices, x, strict=True):
            save_png(to_pil(img), out_dir / file_name(i))
    nfe = stats.nfe / batch_count(len(indices), batch_size) if indices else 0.0
    gathered = distributed.gather_in_order(list(x), info) if out_dir is None else None
    return gathered, nfe
