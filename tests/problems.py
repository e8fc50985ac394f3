"""Known-answer problems (in the style of torchdiffeq's tests/problems.py): models whose score is exact."""

from __future__ import annotations

import torch
from torch import nn

from ddib.model.diffusion import Diffusion, DiffusionConfig


class GaussianEps(nn.Module):
    """Exact ε(x_t, t) for data x_0 ~ N(μ, s²I): ε = σ (x_t − α μ) / (α² s² + σ²)."""

    def __init__(self, mean: torch.Tensor, std: float, schedule):
        super().__init__()
        self.register_buffer("mean", mean)
        self.std = std
        self.schedule = schedule
        self.config = type("Cfg", (), {"data_shape": tuple(mean.shape)})()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.schedule.alpha_sigma(t.to(x.dtype))
        shape = (-1,) + (1,) * (x.ndim - 1)
        alpha, sigma = alpha.reshape(shape), sigma.reshape(shape)
        return sigma * (x - alpha * self.mean) / (alpha**2 * self.std**2 + sigma**2)


def gaussian_model(mean: torch.Tensor, std: float, cfg: DiffusionConfig | None = None) -> Diffusion:
    """A Diffusion whose network is the exact ε of N(mean, std² I)."""
    model = Diffusion(nn.Identity(), cfg)
    model.net = GaussianEps(mean, std, model.schedule)
    return model


def gaussian_flow(model: Diffusion, x: torch.Tensor, mean: torch.Tensor, std: float, t_from: float, t_to: float):
    """The exact PF-ODE map between marginals: x ↦ α'μ + √(α'²s² + σ'²)/√(α²s² + σ²) · (x − αμ)."""
    a0, s0 = model.schedule.alpha_sigma(torch.tensor(t_from, dtype=torch.float64))
    a1, s1 = model.schedule.alpha_sigma(torch.tensor(t_to, dtype=torch.float64))
    scale = torch.sqrt(a1**2 * std**2 + s1**2) / torch.sqrt(a0**2 * std**2 + s0**2)
    return a1 * mean + scale * (x - a0 * mean)


class CorrelatedGaussianEps(nn.Module):
    """Exact ε for x_0 ~ N(μ, Σ) with full Σ (on flattened x): ε = σ (α²Σ + σ²I)⁻¹ (x_t − αμ)."""

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, schedule):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)
        self.schedule = schedule
        self.config = type("Cfg", (), {"data_shape": tuple(mean.shape)})()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.schedule.alpha_sigma(t.to(x.dtype)[:1])
        eye = torch.eye(self.cov.shape[0], dtype=x.dtype, device=x.device)
        cov_t = alpha**2 * self.cov + sigma**2 * eye
        r = (x - alpha * self.mean).reshape(len(x), -1)
        return (sigma * torch.linalg.solve(cov_t, r.T).T).reshape(x.shape)


def correlated_gaussian(mean: torch.Tensor, cov: torch.Tensor) -> Diffusion:
    model = Diffusion(nn.Identity())
    model.net = CorrelatedGaussianEps(mean, cov, model.schedule)
    return model


class GaussianV(GaussianEps):
    """Exact v = α·ε − σ·x_0 = (ε − σ·x_t)/α for the same Gaussian data."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.schedule.alpha_sigma(t.to(x.dtype))
        shape = (-1,) + (1,) * (x.ndim - 1)
        alpha, sigma = alpha.reshape(shape), sigma.reshape(shape)
        return (super().forward(x, t) - sigma * x) / alpha


def gaussian_v_model(mean: torch.Tensor, std: float) -> Diffusion:
    """A v-parameterised Diffusion whose network is the exact v of N(mean, std² I)."""
    model = Diffusion(nn.Identity(), DiffusionConfig(prediction="v"))
    model.net = GaussianV(mean, std, model.schedule)
    return model


class GaussianMixtureEps(nn.Module):
    """Exact ε for x_0 ~ (1/K) Σ_k N(μ_k, s²I): ε = σ (x_t − α·E[μ | x_t]) / (α²s² + σ²), E over the posterior
    softmax_k(−‖x_t − αμ_k‖² / 2(α²s² + σ²)). Nonlinear and smooth in t: a stand-in for a perfectly trained model."""

    def __init__(self, means: torch.Tensor, std: float, schedule):
        super().__init__()
        self.register_buffer("means", means)
        self.std = std
        self.schedule = schedule
        self.config = type("Cfg", (), {"data_shape": tuple(means.shape[1:])})()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (c.to(x.dtype).reshape(-1, 1) for c in self.schedule.alpha_sigma(t.to(x.dtype)))
        var = alpha**2 * self.std**2 + sigma**2
        flat, means = x.reshape(len(x), -1), self.means.reshape(len(self.means), -1)
        dist2 = (flat[:, None, :] - alpha[:, None] * means[None]).pow(2).sum(-1)
        posterior_mean = torch.softmax(-dist2 / (2 * var), dim=1) @ means
        return (sigma * (flat - alpha * posterior_mean) / var).reshape(x.shape)


def gaussian_mixture_model(means: torch.Tensor, std: float) -> Diffusion:
    """A Diffusion whose network is the exact ε of an equal-weight isotropic Gaussian mixture."""
    model = Diffusion(nn.Identity())
    model.net = GaussianMixtureEps(means, std, model.schedule)
    return model


class ConditionalGaussianEps(nn.Module):
    """A class-conditional "network" with exact answers: label k ↦ the ε of N(μ_k, s²I), the null label (K) ↦ the ε
    of their equal-weight mixture (what label dropout teaches a real conditional network)."""

    def __init__(self, means: torch.Tensor, std: float, schedule):
        super().__init__()
        self.classes = [GaussianEps(m, std, schedule) for m in means]
        self.union = GaussianMixtureEps(means, std, schedule)
        self.config = type("Cfg", (), {"data_shape": tuple(means.shape[1:]), "num_classes": len(means)})()

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            return self.union(x, t)
        out = torch.empty_like(x)
        for k in labels.unique().tolist():
            rows = labels == k
            out[rows] = (self.union if k == len(self.classes) else self.classes[k])(x[rows], t[rows])
        return out


def conditional_gaussian_model(means: torch.Tensor, std: float) -> Diffusion:
    """A conditional Diffusion over K Gaussian classes with exact per-class and union ε."""
    model = Diffusion(nn.Identity())
    model.net = ConditionalGaussianEps(means, std, model.schedule)
    return model
