"""Source-domain identification measured: accuracy, bits/dim per domain and cost of each likelihood estimator."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..bridge.batching import chunks
from ..errors import DDIBError
from ..likelihood.source_inference import BAND, rank, score_images
from ..model.diffusion import Diffusion


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


@dataclass
class IdentifyDetail:
    """Per setting: how often images of each domain (rows) were ranked first under each model (columns), and
    their mean bits/dim under each model (the Nalisnick et al. 2019 question: does some model win everywhere?)."""

    setting: str
    confusion: dict[str, dict[str, int]]
    bits_per_dim: dict[str, dict[str, float]]


def bench_identify(
    models: dict[str, Diffusion],
    images: dict[str, torch.Tensor],
    settings: list[tuple[str, dict]],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    on_row: Callable[[IdentifyRow], None] | None = None,
) -> tuple[list[IdentifyRow], list[IdentifyDetail]]:
    """For each (method, kwargs): share of held-out uint8 images of each domain ranked first under its own model,
    with the confusion and bits/dim matrices behind it."""
    rows, details = [], []
    for method, kwargs in settings:
        right = undecided = total = nfe = 0
        confusion = {d: {m: 0 for m in models} for d in images}
        bits: dict[str, dict[str, list[float]]] = {d: {m: [] for m in models} for d in images}
        t0 = time.perf_counter()
        for domain, u8 in images.items():
            for chunk in chunks(u8, batch_size):
                scores = score_images(models, chunk, device=device, method=method, **kwargs)
                nfe += sum(s.nfe for s in scores) * len(scores[0].draws)
                for s in scores:
                    bits[domain][s.domain] += s.bits_per_dim.tolist()
                for j in range(len(scores[0].draws)):
                    r = rank(scores, j)
                    confusion[domain][r.best] += 1
                    right += r.best == domain
                    undecided += not r.decisive
                    total += 1
        seconds = time.perf_counter() - t0
        setting = ", ".join(f"{k} [{v[0]:g}, {v[1]:g}]" if isinstance(v, tuple) else f"{k} {v:g}"
                            for k, v in kwargs.items())  # fmt: skip
        means = {d: {m: sum(v) / len(v) for m, v in row.items()} for d, row in bits.items()}
        bpd = "; ".join(f"{d} {means[d][d]:.3f}" for d in images if d in models)
        row = IdentifyRow(method, setting, total // len(images), right / total, undecided / total,
                          nfe / total / len(models), seconds / total, bpd)  # fmt: skip
        rows.append(row)
        details.append(IdentifyDetail(f"{method} ({setting})", confusion, means))
        if on_row:
            on_row(row)
    return rows, details


def matrix_markdown(matrix: dict[str, dict[str, float]], corner: str, fmt: str) -> str:
    """A Markdown table with one row per key of `matrix` and one column per key of its rows."""
    columns = list(next(iter(matrix.values())))
    lines = [f"| {corner} | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += [f"| {r} | " + " | ".join(format(v[c], fmt) for c in columns) + " |" for r, v in matrix.items()]
    return "\n".join(lines) + "\n"


def parse_setting(item: str, tol: float) -> tuple[str, dict]:
    """ "band:16" / "band:16:-4:4" (log-SNR band) / "elbo:16" / "ode:1" → (method, score_images kwargs)."""
    method, *fields = item.split(":")
    arity = {"band": (1, 3), "elbo": (1,), "ode": (1,)}
    try:
        if method not in arity or len(fields) not in arity[method]:
            raise ValueError
        count = int(fields[0])
        band = (float(fields[1]), float(fields[2])) if len(fields) == 3 else BAND
        if count < 1 or not band[0] < band[1]:
            raise ValueError
    except ValueError:
        raise DDIBError(f"bad setting {item!r}: use band:LEVELS[:LO:HI], elbo:LEVELS or ode:PROBES") from None
    if method == "ode":
        return method, {"probes": count, "rtol": tol, "atol": tol}
    return method, {"levels": count, **({"band": band} if method == "band" else {})}
