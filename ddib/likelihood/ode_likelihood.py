"""Exact log-likelihoods from the probability-flow ODE (instantaneous change of variables; Song et al. 2021).

In the DDIM coordinates of `ode.py`, x̄ = x/α and dx̄/dσ̄ = g(x̄, σ̄) = ε̂(αx̄, t(σ̄)), so

    log p₀(x) = log N(x₁; 0, I) + D·log α₁ − D·log α₀ + ∫_{σ̄_min}^{σ̄_max} ∇_x̄·g(x̄, σ̄) dσ̄,

solved jointly with x̄ from σ̄_min to σ̄_max. The divergence is exact (D vector-Jacobian products) for
low-dimensional data such as 2-D points, and Hutchinson's estimate E_v[vᵀ(∂g/∂x̄)v] with Rademacher v
(several probes, fixed during a solve) for images; the probes' spread gives the standard error.

8-bit images are dequantised uniformly: pixel k ∈ {0..255} becomes x = 2(k + u)/256 − 1, u ~ U[0, 1), and
log P(k) ≥ E_u[log p(x)] + D·log(2/256), reported as bits/dim = −(log p(x) + D log(2/256)) / (D log 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..bridge.solvers import adaptive_odeint, per_sample_rms_max
from ..errors import DDIBError
from ..model.diffusion import Diffusion
from ..utils import tf32_kernels

LOG_2PI = math.log(2 * math.pi)


@dataclass
class LikelihoodResult:
    """Per-sample log-density (nats) with the standard error over Hutchinson probes (0 when exact).

    `per_draw` (B, K) holds the estimate from each probe (or noise level, for the ELBO); estimates of several
    models made with the same draws are paired, so their differences have a much smaller error than each alone.
    """

    log_p: torch.Tensor
    stderr: torch.Tensor
    nfe: int
    dims: int
    per_draw: torch.Tensor | None = None

    def bits_per_dim(self, dequantized_bin: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(bits/dim, its standard error); with a bin width, the discrete bits/dim of dequantised data."""
        shift = self.dims * math.log(dequantized_bin) if dequantized_bin else 0.0
        scale = 1.0 / (self.dims * math.log(2))
        return -(self.log_p + shift) * scale, self.stderr * scale

    def bits_per_dim_draws(self, dequantized_bin: float | None = None) -> torch.Tensor:
        """(B, K) bits/dim of each draw (K = 1 for an exact divergence)."""
        draws = self.per_draw if self.per_draw is not None else self.log_p[:, None]
        shift = self.dims * math.log(dequantized_bin) if dequantized_bin else 0.0
        return -(draws + shift) / (self.dims * math.log(2))


def _divergence_fn(model: Diffusion, exact: bool, probes: torch.Tensor | None, counter: list[int]):
    def f(sigma_bar: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        x_bar, _ = state
        counter[0] += 1
        with torch.enable_grad():
            x_bar = x_bar.detach().requires_grad_(True)
            g = model.eps_bar(x_bar, sigma_bar)
            b = x_bar.shape[0]
            if exact:
                flat = x_bar.reshape(b, -1)
                div = torch.zeros(b, dtype=x_bar.dtype, device=x_bar.device)
                gf = g.reshape(b, -1)
                for i in range(flat.shape[1]):
                    (grad,) = torch.autograd.grad(gf[:, i].sum(), x_bar, retain_graph=i < flat.shape[1] - 1)
                    div = div + grad.reshape(b, -1)[:, i]
                div = div[:, None]
            else:
                divs = []
                for k in range(probes.shape[0]):
                    v = probes[k]
                    (vjp,) = torch.autograd.grad(g, x_bar, v, retain_graph=k < probes.shape[0] - 1)
                    divs.append((vjp * v).reshape(b, -1).sum(1))
                div = torch.stack(divs, 1)  # (B, probes)
        return g.detach(), div.detach()

    return f


@torch.no_grad()
def log_likelihood(
    model: Diffusion,
    x: torch.Tensor,
    probes: int = 4,
    exact: bool | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    solver: str = "dopri5",
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """log p₀(x) under the model's probability-flow ODE, for a batch x (B, ...); for a cone model, the density of
    x's HSV-cone coordinates (comparable only between cone models)."""
    if probes < 1:
        raise DDIBError("--probes must be at least 1")
    x = model.to_model_space(x)
    dims = x[0].numel()
    exact = dims <= 8 if exact is None else exact
    sched = model.schedule
    alpha_0, alpha_1 = sched.alpha_ends
    v = None
    if not exact:
        v = torch.randint(0, 2, (probes, *x.shape), generator=generator).to(x.device, x.dtype) * 2 - 1
    counter = [0]
    f = _divergence_fn(model, exact, v, counter)
    n_div = 1 if exact else probes
    state = (x / alpha_0, torch.zeros(x.shape[0], n_div, dtype=x.dtype, device=x.device))
    span = torch.tensor([sched.sigma_min, sched.sigma_max], dtype=x.dtype, device=x.device)
    with tf32_kernels(False):  # bits/dim differences between domains are small: no TF32 rounding in them
        x_bar_1, integral = adaptive_odeint(f, state, span, solver, rtol, atol, _state_norm)
    x_bar_1, integral = x_bar_1[-1], integral[-1]
    x_1 = x_bar_1 * alpha_1
    prior = -0.5 * (x_1.reshape(len(x), -1) ** 2).sum(1) - 0.5 * dims * LOG_2PI
    # Change of variables z → x̄₁ → x̄₀ → x₀, and to the image y in [-1, 1] (`log_scale`).
    jacobian = dims * (math.log(alpha_1) - math.log(alpha_0) + model.log_scale)
    per_probe = prior[:, None] + jacobian + integral
    log_p = per_probe.mean(1)
    stderr = per_probe.std(1) / math.sqrt(n_div) if n_div > 1 else torch.zeros_like(log_p)
    return LikelihoodResult(log_p, stderr, counter[0], dims, per_probe)


def _state_norm(state) -> torch.Tensor:
    # Both the trajectory and the accumulated divergence must meet the tolerance, for every sample.
    return torch.maximum(per_sample_rms_max(state[0]), per_sample_rms_max(state[1]))


def dequantize(u8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of 8-bit pixels into [-1, 1]: x = 2(k + u)/256 − 1, u ~ U[0, 1)."""
    u = torch.rand(u8.shape, generator=generator)
    return (u8.float() + u) * (2.0 / 256.0) - 1.0


DEQUANT_BIN = 2.0 / 256.0  # width of one 8-bit bin in model space
