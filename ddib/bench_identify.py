"""Source-domain identification measured: accuracy, bits/dim per domain and cost of each likelihood estimator."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .diffusion import Diffusion
from .domain_inference import rank, score_images


@dataclass
class IdentifyRow:
    method: str
    setting: str
    n_per_domain: int
    accuracy: float
    undecided: float
    nfe_per_image_per_model: float
    seconds_per_image: float
    bits_per_dim: str  # "domain: mean bits/dim of its own held-out images under its own model", joined


def bench_identify(
    models: dict[str, Diffusion],
    images: dict[str, torch.Tensor],
    settings: list[tuple[str, dict]],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    on_row: Callable[[IdentifyRow], None] | None = None,
) -> list[IdentifyRow]:
    """For each (method, kwargs): share of held-out uint8 images of each domain ranked first under its own model."""
    rows = []
    for method, kwargs in settings:
        right = undecided = total = nfe = 0
        own: dict[str, list[float]] = {d: [] for d in images}
        t0 = time.perf_counter()
        for domain, u8 in images.items():
            for i in range(0, len(u8), batch_size):
                scores = score_images(models, u8[i : i + batch_size], device=device, method=method, **kwargs)
                nfe += sum(s.nfe for s in scores) * len(scores[0].draws)
                own[domain] += [s for s in scores if s.domain == domain][0].bits_per_dim.tolist()
                for j in range(len(scores[0].draws)):
                    r = rank(scores, j)
                    right += r.best == domain
                    undecided += not r.decisive
                    total += 1
        seconds = time.perf_counter() - t0
        setting = ", ".join(f"{k} {v:g}" for k, v in kwargs.items())
        bpd = "; ".join(f"{d} {sum(v) / len(v):.3f}" for d, v in own.items())
        row = IdentifyRow(method, setting, total // len(images), right / total, undecided / total,
                          nfe / total / len(models), seconds / total, bpd)  # fmt: skip
        rows.append(row)
        if on_row:
            on_row(row)
    return rows
