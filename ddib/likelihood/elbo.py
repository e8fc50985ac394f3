"""The diffusion ELBO at a few noise levels: a cheap bound on −log p(x) (Kingma et al. 2021, "Variational
Diffusion Models", eq. 17 in log-SNR form), for comparing domain models without solving an ODE.

With log-SNR λ = log(α²/σ²) = −2 log σ̄ and x_λ = α x + σ ε,

    −log p(x) ≤ ½ ∫_{λ_min}^{λ_max} E_ε ‖ε − ε̂(x_λ, λ)‖² dλ  +  KL(q(x₁|x) ‖ N(0, I))  +  E[−log N(x; x_{t0}/α₀, σ̄₀²)].

The last two terms depend only on x and the (shared) schedule, so a comparison between models rests on the
integral alone; it is estimated with K stratified λ values and noises that are the same for every model
(common random numbers), and its standard error comes from the spread over the K strata.

With a `band` (λ_lo, λ_hi) only that part of the integral is estimated, and no constant is added: not a bound on
log p but a score for ranking models. Mid log-SNRs are where a denoiser must know the digit to predict ε; at high
SNR all digit models face the same pixel-level task and at low SNR the same near-pure noise, so those levels add
variance to a comparison and little signal (the "Diffusion Classifier" of Li et al., ICCV 2023, weights noise
levels for the same reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import DDIBError
from ..model.diffusion import Diffusion
from .ode_likelihood import LOG_2PI, LikelihoodResult


@dataclass(frozen=True)
class ELBODraw:
    """The random numbers of one estimate: shared by every model scored on the same inputs."""

    u: torch.Tensor  # (B, K) stratified positions in [0, 1)
    noise: torch.Tensor  # (K, B, ...) ε per level


def draw(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> ELBODraw:
    offset = torch.rand((x.shape[0], 1), generator=generator, dtype=torch.float64)
    u = (offset + torch.arange(levels, dtype=torch.float64) / levels) % 1.0  # one point per stratum
    noise = torch.randn((levels, *x.shape), generator=generator)
    return ELBODraw(u, noise)


@torch.no_grad()
def elbo(model: Diffusion, x: torch.Tensor, levels: int = 8, sample: ELBODraw | None = None,
         generator: torch.Generator | None = None,
         band: tuple[float, float] | None = None) -> LikelihoodResult:  # fmt: skip
    """Lower bound on log p(x) (nats) from `levels` network evaluations per input; stderr over the strata.
    With `band`, minus the integral over that log-SNR band alone (a ranking score, see the module docstring).
    A cone model's figure is the density of the image's HSV-cone coordinates, comparable only between cone models."""
    sched = model.schedule
    x = model.to_model_space(x)
    sample = sample or draw(x, levels, generator)
    b, dims = x.shape[0], x[0].numel()
    lam_lo, lam_hi = -2 * math.log(sched.sigma_max), -2 * math.log(sched.sigma_min)
    if band is not None:
        if not lam_lo <= band[0] < band[1] <= lam_hi:
            raise DDIBError(f"band {band} must lie inside the schedule's log-SNR range [{lam_lo:.2f}, {lam_hi:.2f}]")
        lam_lo, lam_hi = band
    flat = x.reshape(b, -1).double()
    terms = []
    for k in range(levels):
        lam = lam_lo + sample.u[:, k] * (lam_hi - lam_lo)  # (B,) float64
        sigma_bar = torch.exp(-lam / 2)
        alpha = sched.alpha_of_sigma_bar(sigma_bar)
        sigma = sigma_bar * alpha
        eps = sample.noise[k].to(x.device, x.dtype)
        shape = (b,) + (1,) * (x.ndim - 1)
        x_t = alpha.view(shape).to(x) * x + sigma.view(shape).to(x) * eps
        t = sched.t_of_sigma_bar(sigma_bar).to(x)
        err = (eps - model.eps(x_t, t)).reshape(b, -1).double().pow(2).sum(1)
        terms.append(0.5 * (lam_hi - lam_lo) * err)  # one-point estimate of the whole integral
    per_level = torch.stack(terms, 1)  # (B, K)
    diffusion = per_level.mean(1)
    stderr = per_level.std(1) / math.sqrt(levels) if levels > 1 else torch.zeros(b, dtype=torch.float64)
    if band is not None:
        return LikelihoodResult((-diffusion).float().cpu(), stderr.float().cpu(), levels, dims,
                                (-per_level).float().cpu())  # fmt: skip
    a1 = (1 + sched.sigma_max**2) ** -0.5
    s1_sq = 1 - a1**2
    prior = 0.5 * ((a1**2) * flat.pow(2).sum(1) + dims * (s1_sq - 1 - math.log(s1_sq)))
    recon = 0.5 * dims * (LOG_2PI + 2 * math.log(sched.sigma_min) + 1)  # expected Gaussian NLL at σ̄_min
    constant = prior + recon - dims * model.log_scale  # the density of the image, not of the model's coordinates
    log_p = -(diffusion + constant)
    per_draw = -(per_level + constant[:, None])
    return LikelihoodResult(log_p.float().cpu(), stderr.float().cpu(), levels, dims, per_draw.float().cpu())
