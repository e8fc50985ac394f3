"""Classifier guidance (Dhariwal & Nichol 2021): a classifier of noisy images p_φ(y | x_t, t) steers a
class-conditional model's decode towards its class, ε̃ = ε̂ − s·σ·∇_{x_t} log p_φ(y | x_t, t) — in the DDIM
coordinates x̄ = x_t/α, σ·∇_{x_t} = σ̄·∇_x̄, so ε̃ = ε̂ − s·σ̄·∇_x̄ log p_φ(y | α·x̄, t(σ̄))."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import DDIBError

if TYPE_CHECKING:
    from .diffusion import Diffusion


@dataclass(frozen=True)
class NoisyClassifier:
    """A network (x_t, noise input) → logits, told the noise level as the diffusion model is, and the scale its
    guidance is used at unless a solve gives another (guided-diffusion's `classifier_scale`)."""

    net: nn.Module
    classes: int
    scale: float = 1.0


def log_prob_grad(model: Diffusion, x_bar: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
    """∇_x̄ log p_φ(y | α·x̄, t(σ̄)) for the model's label y, by its classifier."""
    if model.classifier is None or model.label is None:
        raise DDIBError("classifier guidance needs a noisy classifier and a class label")
    t = torch.as_tensor(model.schedule.t_of_sigma_bar(sigma_bar), device=x_bar.device).expand(x_bar.shape[0])
    alpha = torch.as_tensor(model.schedule.alpha_of_sigma_bar(sigma_bar), device=x_bar.device).to(x_bar.dtype)
    with torch.enable_grad():
        x = x_bar.detach().requires_grad_(True)
        logits = model.classifier.net(x * alpha, model.noise_input(t).to(x.dtype))
        chosen = torch.log_softmax(logits.float(), dim=-1)[:, model.label].sum()
        return torch.autograd.grad(chosen, x)[0]
