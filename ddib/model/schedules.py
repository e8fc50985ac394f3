"""Noise schedules of a VP diffusion, each as the map t ∈ [0, 1] ↔ σ̄ = σ/α it defines.

Every schedule offers the same small interface: `sigma_bar(t)`, `t_of_sigma_bar(σ̄)`, `alpha_sigma(t)`, the span
[sigma_min, sigma_max] the ODE is solved over, and `timestep(t)`, the noise level in the units its network was
trained on. Three kinds:
- `CosineSchedule`: ddib's own, continuous (Nichol & Dhariwal 2021 in its log-SNR form, truncated as EDM).
- `GeometricSchedule`: the variance-exploding SDE of score-SDE models (Song et al. 2021), σ(t) = σ_min·(σ_max/σ_min)^t,
  whose x is already x̄: the VP process with the same σ̄ has the same probability-flow ODE in DDIM coordinates.
- `DiscreteSchedule`: a DDPM table ᾱ_n, n = 0 … T−1 (Ho et al. 2020), as diffusers' and guided-diffusion's models
  are trained on: `linear`, `scaled_linear`, `squaredcos_cap_v2` or given betas. Between table entries the
  timestep is interpolated linearly in log σ̄ (as k-diffusion's `DiscreteSchedule`), so the ODE can be solved at
  any σ̄ inside the table's range [σ̄_0, σ̄_{T−1}], and only there.
"""

from __future__ import annotations

import copy
import math

import torch

DISCRETE_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "trained_betas")
SCHEDULES = ("cosine", "ve", *DISCRETE_SCHEDULES)


def alpha_of_sigma_bar(sigma_bar):
    """α = 1/√(1 + σ̄²), from σ̄ = σ/α and α² + σ² = 1."""
    return torch.rsqrt(1 + sigma_bar**2) if torch.is_tensor(sigma_bar) else (1 + sigma_bar**2) ** -0.5


class _Span:
    """What every schedule shares: the σ̄ span a solve covers, and its restriction to a lower top."""

    sigma_min: float
    sigma_max: float
    alpha_of_sigma_bar = staticmethod(alpha_of_sigma_bar)

    @property
    def alpha_ends(self) -> tuple[float, float]:
        """(α at σ̄_min, α at σ̄_max): x = α·x̄ at the data end and at the latent end."""
        return alpha_of_sigma_bar(self.sigma_min), alpha_of_sigma_bar(self.sigma_max)

    def within(self, sigma_max: float):
        """The same schedule (same t ↔ σ̄ map, so the same network inputs) solved only up to `sigma_max`."""
        if not self.sigma_min < sigma_max <= self.sigma_max:
            raise ValueError(f"σ̄ {sigma_max} is outside ({self.sigma_min}, {self.sigma_max}]")
        out = copy.copy(self)
        out.sigma_max = float(sigma_max)
        return out

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α(t), σ(t)) from σ̄(t)."""
        alpha = alpha_of_sigma_bar(self.sigma_bar(t))
        return alpha, alpha * self.sigma_bar(t)


class CosineSchedule(_Span):
    """σ̄(t) = tan(a·t + b) with b = atan(σ̄_min), a = atan(σ̄_max) − b; α = 1/√(1+σ̄²), σ = σ̄·α."""

    def __init__(self, sigma_min: float, sigma_max: float):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.b = math.atan(sigma_min)
        self.a = math.atan(sigma_max) - self.b

    def sigma_bar(self, t):
        """σ̄(t) = σ(t)/α(t)."""
        return torch.tan(self.a * t + self.b) if torch.is_tensor(t) else math.tan(self.a * t + self.b)

    def t_of_sigma_bar(self, sigma_bar):
        """Inverse of σ̄(t)."""
        if torch.is_tensor(sigma_bar):
            return (torch.atan(sigma_bar) - self.b) / self.a
        return (math.atan(sigma_bar) - self.b) / self.a

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α(t), σ(t)) = (cos(a·t + b), sin(a·t + b))."""
        angle = self.a * t + self.b
        return torch.cos(angle), torch.sin(angle)

    def timestep(self, t):
        return t


class GeometricSchedule(_Span):
    """σ̄(t) = σ_min·(σ_max/σ_min)^t: the VE SDE's noise level (Song et al. 2021), log σ̄ linear in t."""

    def __init__(self, sigma_min: float, sigma_max: float):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.log_ratio = math.log(sigma_max / sigma_min)

    def sigma_bar(self, t):
        exp = torch.exp if torch.is_tensor(t) else math.exp
        return self.sigma_min * exp(self.log_ratio * t)

    def t_of_sigma_bar(self, sigma_bar):
        log = torch.log if torch.is_tensor(sigma_bar) else math.log
        return log(sigma_bar / self.sigma_min) / self.log_ratio

    def timestep(self, t):
        """σ itself: what a score-SDE network is conditioned on."""
        return self.sigma_bar(t)


def discrete_alphas_cumprod(name: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02,
                            betas: tuple[float, ...] | None = None) -> torch.Tensor:  # fmt: skip
    """ᾱ_n = ∏_{m≤n} (1 − β_m) for diffusers' `beta_schedule` names, in float64 (Ho et al. 2020; Nichol & Dhariwal
    2021 for squaredcos_cap_v2)."""
    if name == "linear":
        beta = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    elif name == "scaled_linear":
        beta = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    elif name == "squaredcos_cap_v2":
        f = lambda n: math.cos((n + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        beta = torch.tensor([min(1 - f((i + 1) / steps) / f(i / steps), 0.999) for i in range(steps)],
                            dtype=torch.float64)  # fmt: skip
    elif name == "trained_betas":
        beta = torch.tensor(betas, dtype=torch.float64)
    else:
        raise ValueError(f"unknown discrete schedule {name!r}")
    return torch.cumprod(1 - beta, 0)


class DiscreteSchedule(_Span):
    """A DDPM table: σ̄_n = √((1 − ᾱ_n)/ᾱ_n) at n = t·(T−1), log σ̄ linear in n between entries."""

    def __init__(self, alphas_cumprod: torch.Tensor):
        abar = alphas_cumprod.double()
        self.log_sigma_bars = 0.5 * torch.log((1 - abar) / abar)
        if not bool((self.log_sigma_bars.diff() > 0).all()):
            raise ValueError("the schedule's noise levels must increase with the timestep")
        self.num_timesteps = len(abar)
        self.sigma_min = math.exp(self.log_sigma_bars[0])
        self.sigma_max = math.exp(self.log_sigma_bars[-1])
        self._tables: dict[torch.device, torch.Tensor] = {}

    def _table(self, like: torch.Tensor) -> torch.Tensor:
        if like.device not in self._tables:
            self._tables[like.device] = self.log_sigma_bars.to(like.device)
        return self._tables[like.device]

    def timestep(self, t):
        """n = t·(T − 1): the network's own (fractional) timestep."""
        return t * (self.num_timesteps - 1)

    def sigma_bar(self, t):
        """σ̄ at n = t·(T−1), interpolating log σ̄ linearly between the table's entries."""
        tensor = torch.as_tensor(t, dtype=torch.float64)
        table = self._table(tensor)
        n = (tensor * (self.num_timesteps - 1)).clamp(0, self.num_timesteps - 1)
        lo = n.floor().long().clamp(max=self.num_timesteps - 2)
        w = n - lo
        out = torch.exp(table[lo] * (1 - w) + table[lo + 1] * w)
        return out.to(t.dtype) if torch.is_tensor(t) else float(out)

    def t_of_sigma_bar(self, sigma_bar):
        """Inverse of σ̄(t): the fractional timestep whose interpolated log σ̄ is log σ̄, over T − 1 (float64)."""
        tensor = (
            sigma_bar.to(torch.float64) if torch.is_tensor(sigma_bar) else torch.tensor(sigma_bar, dtype=torch.float64)
        )
        table = self._table(tensor)
        log_s = torch.log(tensor)
        hi = torch.searchsorted(table, log_s.detach().contiguous()).clamp(1, self.num_timesteps - 1)
        lo = hi - 1
        w = ((log_s - table[lo]) / (table[hi] - table[lo])).clamp(0, 1)
        t = (lo + w) / (self.num_timesteps - 1)
        return t if torch.is_tensor(sigma_bar) else float(t)
