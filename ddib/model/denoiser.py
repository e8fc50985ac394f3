"""The one interface the bridge, the solvers, tuning and likelihoods ask of a model (k-diffusion's external-wrapper
idea): a denoiser that gives ε̂ at (x̄, σ̄) and owns its noise schedule, its parameterisation and what leaves or
enters its coordinates. `Diffusion` implements it for ddib's own networks and, through network adapters and a
DDPM-table schedule (`external/`), for diffusers and guided-diffusion ones; a label binds a class-conditional
model to one class (`with_label`)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Denoiser(Protocol):
    schedule: object  # sigma_min, sigma_max, sigma_bar(t), t_of_sigma_bar(σ̄), alpha_sigma(t) (schedules.py)
    label: int | None

    @property
    def data_shape(self) -> tuple[int, ...]: ...

    def eps_bar(self, x_bar: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        """ε̂(α(σ̄)·x̄, t(σ̄)): the probability-flow drift dx̄/dσ̄."""

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂ at x_t and schedule time t ∈ [0, 1]."""

    def within(self, sigma_max: float) -> Denoiser:
        """The same model solved only up to σ̄ = sigma_max (where a bridge's two ends meet)."""

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] → the coordinates the diffusion runs in."""

    def to_images(self, x: torch.Tensor, hue: torch.Tensor | None = None) -> torch.Tensor:
        """The diffusion's coordinates → images in [-1, 1]."""

    def image_hue(self, images: torch.Tensor) -> torch.Tensor | None:
        """What travels beside the latent (a hue-quotient model's hue), or None."""
