"""Which domain does an input come from? Compare its likelihood under every candidate model.

Three scores, all run with the same random draws (dequantisation noise, Hutchinson probes, ELBO noise levels)
for every model, so a margin between two models is judged by the spread of its *paired* differences:
- "ode":  exact log-likelihood of the probability-flow ODE (dopri5, Hutchinson divergence; `likelihood.py`);
- "elbo": the diffusion ELBO at a few noise levels (`elbo.py`), a bound costing `levels` evaluations;
- "band": the same ELBO integrand over the mid log-SNR band BAND only (`elbo.py`): not a likelihood, but the
  part of it that differs between domains, so its comparisons are sharper at the same cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..bridge.batching import chunks, pixel_batch
from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..model.registry import DomainModel, load_domain_model, source_candidates
from .elbo import draw, elbo
from .ode_likelihood import DEQUANT_BIN, dequantize, log_likelihood

METHODS = ("band", "elbo", "ode")
LIKELIHOODS = ("elbo", "ode")  # the methods that estimate log p(x) itself
# Images per likelihood batch at 32×32; larger images hold the same pixels (`pixel_batch`): an exact likelihood
# keeps a backward pass's activations.
LIKELIHOOD_BATCH = 16
BAND = (-2.0, 2.0)  # log-SNR λ = −2 log σ̄, i.e. σ̄ from 0.37 to 2.7 (chosen by `ddib bench identify`)


def check_method(method: str, allowed: tuple[str, ...] = METHODS) -> None:
    if method not in allowed:
        raise DDIBError(f"unknown method {method!r}; choose from {', '.join(allowed)}")


@dataclass
class DomainScore:
    domain: str
    draws: torch.Tensor  # (B, K) bits/dim per probe / noise level, paired across domains
    nfe: int
    estimated: bool = True  # False for an exact divergence (low-dimensional data): K = 1 then has no error

    @property
    def bits_per_dim(self) -> torch.Tensor:
        return self.draws.mean(1)

    @property
    def stderr(self) -> torch.Tensor:
        k = self.draws.shape[1]
        return self.draws.std(1) / math.sqrt(k) if k > 1 else torch.zeros(len(self.draws))


def score_images(
    models: dict[str, Diffusion],
    images_u8: torch.Tensor,
    probes: int = 4,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    method: str = "ode",
    levels: int = 16,
    band: tuple[float, float] = BAND,
) -> list[DomainScore]:
    """Bits/dim of 8-bit images under each model (for "band": of the band's part of the ELBO, no dequantisation
    offset); the same dequantisation and random draws for every model."""
    check_method(method)
    spaces = {m.config.color_space for m in models.values()}
    if len(spaces) > 1:  # densities of different coordinates differ by a Jacobian, not by how well each fits
        raise DDIBError(f"cannot rank models that work in different colour spaces ({', '.join(sorted(spaces))})")
    if len({m.config.quotient for m in models.values()}) > 1:  # a density of x against one of x's hue-0 copy
        raise DDIBError("cannot rank hue-quotient models against models of the full domain (different --quotient)")
    x = dequantize(images_u8, torch.Generator().manual_seed(seed)).to(device)
    shared = draw(x, levels, torch.Generator().manual_seed(seed + 1)) if method != "ode" else None
    scores = []
    for name, model in models.items():
        if method == "ode":
            gen = torch.Generator().manual_seed(seed)
            res = log_likelihood(model, x, probes=probes, rtol=rtol, atol=atol, generator=gen)
        else:
            res = elbo(model, x, levels, shared, band=band if method == "band" else None)
        bins = None if method == "band" else DEQUANT_BIN
        scores.append(DomainScore(name, res.bits_per_dim_draws(bins).cpu(), res.nfe))  # images: estimated
    return scores


@dataclass
class Ranking:
    """Domains most likely first (mean bits/dim), with the margin between the first two and its paired error."""

    order: list[tuple[str, float, float]]  # (domain, bits/dim, stderr)
    margin: float
    margin_stderr: float

    @property
    def best(self) -> str:
        return self.order[0][0]

    @property
    def decisive(self) -> bool:
        """The margin exceeds twice its standard error (or is positive when the estimate is exact; never with an
        error that one random draw cannot tell)."""
        return self.margin > 2 * self.margin_stderr if self.margin_stderr > 0 else self.margin > 0


def rank(scores: list[DomainScore], i: int | None = None) -> Ranking:
    """Ranking for input i, or (i = None) for all inputs together, as samples of one domain; lower bits/dim wins."""
    rows = slice(None) if i is None else slice(i, i + 1)
    by_domain = {s.domain: s.draws[rows].double() for s in scores}
    n = next(iter(by_domain.values())).shape[0]

    unknown_error = any(s.estimated for s in scores)  # a random estimate from one draw has no error bar

    def mean_and_err(d: torch.Tensor) -> tuple[float, float]:
        k = d.shape[1]
        if k == 1:
            return d.mean().item(), math.inf if unknown_error else 0.0
        return d.mean().item(), ((d.var(1) / k).sum().sqrt() / n).item()

    order = sorted(((name, *mean_and_err(d)) for name, d in by_domain.items()), key=lambda r: r[1])
    if len(order) < 2:
        return Ranking(order, math.inf, 0.0)
    margin, margin_err = mean_and_err(by_domain[order[1][0]] - by_domain[order[0][0]])
    return Ranking(order, margin, margin_err)


# Inputs scored to infer the source (the first ones, in order): enough for a sharp margin, bounded cost.
INFER_INPUTS = 16
DEFAULT_METHOD = "band"  # as accurate as 64-level ELBO at 16 levels, with fewer undecided (bench/identify-*)
DEFAULT_LEVELS = 16


def likelihood_batch(models: dict[str, Diffusion]) -> int:
    """The default batch: LIKELIHOOD_BATCH images of 32×32, or of larger images as many as hold their pixels."""
    return pixel_batch(list(models.values()), LIKELIHOOD_BATCH)


def score_batched(
    models: dict[str, Diffusion],
    images_u8: torch.Tensor,
    batch_size: int | None = None,
    on_batch: Callable[[int, list[DomainScore]], None] | None = None,
    **score,
) -> list[DomainScore]:
    """`score_images` batch by batch (by default as many images as hold the pixels of LIKELIHOOD_BATCH 32×32 ones),
    joined; `on_batch(images done, scores so far)` after each. Each batch draws from the seed alone, as under
    torchrun, so the numbers depend on the batch size."""
    size = batch_size or likelihood_batch(models)
    batches, done = [], 0
    for chunk in chunks(images_u8, size):
        batches.append(score_images(models, chunk, **score))
        done += len(chunk)
        if on_batch is not None:
            on_batch(done, batches)
    return [DomainScore(name, torch.cat([b[k].draws for b in batches]), sum(b[k].nfe for b in batches),
                        batches[0][k].estimated) for k, name in enumerate(models)]  # fmt: skip


def choose_source(target: DomainModel, source: str | None, probe_images: torch.Tensor | None, models_dir, dev,
                  method: str = DEFAULT_METHOD, levels: int = DEFAULT_LEVELS, probes: int = 2, symmetry: str = "auto",
                  say: Callable[[str], None] = lambda line: None) -> DomainModel:  # fmt: skip
    """The source domain's model: the one named, the only other one of the target's shape, or the one under which
    the inputs are most likely (`say` hears how it was chosen).

    `probe_images` are the input images already read (uint8, None without any); the first INFER_INPUTS are scored.
    """
    names = source_candidates(target.location, source, models_dir)
    if source is not None:
        return load_domain_model(source, models_dir, dev, symmetry)
    loaded = {name: load_domain_model(name, models_dir, dev, symmetry) for name in names}
    fits = {n: m for n, m in loaded.items() if m.is_points == target.is_points and m.data_shape == target.data_shape}
    if not fits:
        raise DDIBError(f"no trained domain has {target.name}'s data shape {target.data_shape}; "
                        f"name the source with --from (found: {', '.join(names)})")  # fmt: skip
    if len(fits) == 1:
        name = next(iter(fits))
        say(f"--from not given: using {name}, the only other trained domain of this shape")
        return fits[name]
    listed = ", ".join(fits)
    if probe_images is None or target.is_points:
        raise DDIBError(f"name the source domain with --from (candidates: {listed}); it is inferred from "
                        "input images only")  # fmt: skip
    u8 = probe_images[:INFER_INPUTS]
    models = {n: m.diffusion for n, m in fits.items()}
    scores = score_batched(models, u8, probes=probes, rtol=1e-4, atol=1e-4, device=dev, method=method, levels=levels)
    r = rank(scores)
    ranking = " < ".join(f"{d} {bpd:.3f}" for d, bpd, _ in r.order)
    say(f"--from inferred from {len(u8)} input(s) by {method} bits/dim: {ranking}")
    if not r.decisive:
        raise DDIBError(f"cannot tell the source domain: {r.order[0][0]} leads {r.order[1][0]} by {r.margin:.4f} ± "
                        f"{r.margin_stderr:.4f} bits/dim, within 2 standard errors; name it with --from")  # fmt: skip
    say(f"using {r.best} (margin {r.margin:.3f} ± {r.margin_stderr:.3f} bits/dim over {r.order[1][0]})")
    return fits[r.best]
