"""The VP diffusion wrapper: it owns the noise schedule and the parameterisation; the network knows neither.

Forward process (continuous-time VP, Song et al. 2021): x_t = α(t)·x_0 + σ(t)·ε, α² + σ² = 1, t ∈ [0, 1].
Schedule: the cosine schedule of Nichol & Dhariwal (2021) written in its log-SNR form (Kingma et al. 2021),
σ̄(t) := σ/α = tan(a·t + b), truncated so that σ̄(0) = sigma_min and σ̄(1) = sigma_max (EDM's
0.002 and 80, Karras et al. 2022). Why cosine: on 32×32 images the linear-β schedule destroys the signal
early and spends most of t in near-pure noise; the cosine schedule spreads log-SNR evenly over t, so
uniform t in training covers the noise levels that matter. The truncation keeps the ODE finite at both
ends: at σ̄ = 80 the data is 1/80 of the latent's scale, so x_1 is N(0, I) up to 1.3e-2. Models trained elsewhere
bring their discrete DDPM table, or a score-SDE model its VE schedule, instead (`schedules.py`, `external/`).

Parameterisation (`prediction`): the network outputs ε ("eps", Ho et al. 2020), v = α·ε − σ·x_0 ("v",
Salimans & Ho 2022) or x_0 ("sample"), trained with the plain MSE on its own target; the wrapper hands out ε̂, so
the solvers and likelihoods never see the difference. Why v: with ε the denoised estimate is
x̂_0 = (x_t − σ·ε̂)/α, which multiplies the network's error by σ̄ = σ/α (up to 80 here), and the ε-MSE weights
x̂_0's error by 1/σ̄², so at high noise nothing trains it and an ε-model's x̂_0 can be worse than the mean
training image (docs/quality.md, "v-prediction"), which gets its ODE samples' and encodings' global statistics
(ink, brightness, colour) wrong. v reads x̂_0 = α·x_t − σ·v̂, bounded at every noise level (the "σ_data = 1"
preconditioning of Karras et al. 2022).

Colour space (`color_space`): the diffusion runs on RGB, or on the HSV cone (2V − 1, C·cos h, C·sin h), where a
hue shift is a rotation of two channels and the denoiser is made exactly equivariant to it (`Diffusion._net`).
Why: two independently trained RGB models map latent colour to image colour differently (docs/colour.md); two
cone models both commute with every hue rotation, so a bridge of them can only move hue by what the shape alone
decides. Images enter and leave through `to_model_space` / `to_images`; latents stay in the model's space.

The probability-flow ODE is solved in the DDIM coordinates x̄ = x/α against σ̄, where it reads
dx̄/dσ̄ = ε̂(x̄·α, t(σ̄)) (see `ode.py`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..color import chroma_angle, cone_to_rgb, hue_angle, rgb_to_cone, rotate_chroma, rotate_hue
from ..errors import DDIBError
from ..utils import append_dims
from .noisy_classifier import NoisyClassifier
from .schedules import (
    DISCRETE_SCHEDULES,
    SCHEDULES,
    CosineSchedule,
    DiscreteSchedule,
    GeometricSchedule,
    discrete_alphas_cumprod,
)
from .symmetry import check_symmetry, group_average


def make_schedule(cfg: DiffusionConfig) -> CosineSchedule | GeometricSchedule | DiscreteSchedule:
    """The schedule a config names (schedules.py)."""
    if cfg.schedule == "cosine":
        return CosineSchedule(cfg.sigma_min, cfg.sigma_max)
    if cfg.schedule == "ve":
        return GeometricSchedule(cfg.sigma_min, cfg.sigma_max)
    steps = len(cfg.trained_betas) if cfg.schedule == "trained_betas" else cfg.num_train_timesteps
    try:
        table = discrete_alphas_cumprod(cfg.schedule, steps, cfg.beta_start, cfg.beta_end, cfg.trained_betas)
        return DiscreteSchedule(table)
    except (ValueError, RuntimeError) as exc:
        raise DDIBError(f"invalid {cfg.schedule} schedule: {exc}") from None


# What the network outputs: ε, v = α·ε − σ·x_0, or x_0 itself ("sample", diffusers' name).
PREDICTIONS = ("eps", "v", "sample")
# What the network is conditioned on: t itself, the position of log σ̄ in [log σ̄_min, log σ̄_max] (as EDM's
# c_noise = ¼·ln σ, uniform in log-SNR), which with a low-frequency embedding keeps ε̂ smooth in the noise level, or
# the schedule's own `timestep`: a DDPM table's n ∈ [0, T−1] (times `timestep_scale`: improved-diffusion's rescaled
# timesteps), a VE schedule's σ.
NOISE_INPUTS = ("t", "log-snr", "timestep")
# Where the diffusion runs: on RGB, or on the HSV cone (`color.rgb_to_cone`) with a hue-equivariant denoiser.
COLOR_SPACES = ("rgb", "cone")
# What the model leaves out of its domain: nothing, or the hue (it models the hue-0 slice; the bridge carries each
# image's hue exactly, `Diffusion.to_model_space`).
QUOTIENTS = ("none", "hue")


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule (truncated cosine VP with σ̄ = σ/α over [sigma_min, sigma_max], or a discrete DDPM table whose
    span is its own), parameterisation and what the network is told of the noise level."""

    schedule: str = "cosine"  # SCHEDULES
    sigma_min: float = 0.002  # discrete schedules: the table's σ̄_0 (set from the table)
    sigma_max: float = 80.0  # discrete schedules: the table's σ̄_{T−1}
    prediction: str = "eps"  # configs written before v existed have no key and were ε-models
    symmetry: str = "none"  # the colour symmetries ε̂ is averaged over (symmetry.py); older configs: none
    noise_input: str = "t"  # what the network sees of the noise level (NOISE_INPUTS); older configs: t
    color_space: str = "rgb"  # COLOR_SPACES; older configs: rgb
    quotient: str = "none"  # QUOTIENTS; older configs: none
    # Discrete schedules (diffusers' scheduler config): T, the β range, or the betas themselves.
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    trained_betas: tuple[float, ...] | None = None
    timestep_scale: float = 1.0  # noise input "timestep": the network is told n·timestep_scale
    # Where the model's images lie: [-1, 1], or [0, 1] (score-SDE's uncentred data) when False.
    centered: bool = True

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise DDIBError(f"unknown noise schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.schedule == "trained_betas" and not self.trained_betas:
            raise DDIBError("the trained_betas schedule needs its betas")
        if self.schedule in DISCRETE_SCHEDULES:
            if self.trained_betas is not None:
                object.__setattr__(self, "trained_betas", tuple(float(b) for b in self.trained_betas))
            sched = make_schedule(self)
            object.__setattr__(self, "sigma_min", sched.sigma_min)
            object.__setattr__(self, "sigma_max", sched.sigma_max)
        if self.prediction not in PREDICTIONS:
            raise DDIBError(f"unknown prediction {self.prediction!r}; use one of {', '.join(PREDICTIONS)}")
        if self.color_space not in COLOR_SPACES:
            raise DDIBError(f"unknown colour space {self.color_space!r}; use one of {', '.join(COLOR_SPACES)}")
        if self.quotient not in QUOTIENTS:
            raise DDIBError(f"unknown quotient {self.quotient!r}; use one of {', '.join(QUOTIENTS)}")
        check_symmetry(self.symmetry, color_space=self.color_space, quotient=self.quotient)
        if self.noise_input not in NOISE_INPUTS:
            raise DDIBError(f"unknown noise input {self.noise_input!r}; use one of {', '.join(NOISE_INPUTS)}")
        if not self.centered and self.color_space != "rgb":
            raise DDIBError("uncentred ([0, 1]) data is for RGB or grey models")
        if not 0 < self.sigma_min < self.sigma_max:
            raise DDIBError("noise schedule needs 0 < sigma_min < sigma_max")


def unwrap(net: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel (`.module`) or torch.compile (`._orig_mod`) wrappers."""
    for name in ("module", "_orig_mod"):
        inner = getattr(net, name, None)
        if isinstance(inner, nn.Module):
            return unwrap(inner)
    return net


class Diffusion(nn.Module):
    """A network together with its schedule and parameterisation: ε̂(x_t, t) and the training loss.

    A class-conditional network (num_classes > 0) is the denoiser of one class once bound to its `label`
    (`with_label`), or of the union of its classes with no label; `guidance` w ≠ 0 returns the classifier-free
    guided ε̂ = (1 + w)·ε̂(x, t, y) − w·ε̂(x, t, ∅) (Ho & Salimans 2022), which is no longer the score of the class.
    """

    def __init__(self, net: nn.Module, cfg: DiffusionConfig | None = None, label: int | None = None,
                 guidance: float = 0.0, classifier: NoisyClassifier | None = None):  # fmt: skip
        super().__init__()
        self.net = net
        self.config = cfg or DiffusionConfig()
        self.schedule = make_schedule(self.config)
        if self.config.symmetry != "none":  # (known-answer tests build a Diffusion before they set its net)
            check_symmetry(self.config.symmetry, self.data_shape, self.config.color_space, self.config.quotient)
        # A classifier of noisy images whose guidance steers decodes towards `label` (`noisy_classifier`); its
        # classes are the labels of an unconditional network.
        self.classifier = classifier
        if label is not None and not 0 <= label < self.label_count:
            whose = "network's" if self.num_classes else "classifier's"
            raise DDIBError(f"label {label} is not one of the {whose} {self.label_count} classes")
        if guidance and label is None:
            raise DDIBError("classifier-free guidance needs a class label (a conditional model and a domain)")
        self.label = label
        self.guidance = float(guidance)
        # Step grids tuned for this model (`ddib tune-solver`), by grid_key; loaded from config.json.
        self.solver_grids: dict[str, dict] = {}
        # Step count per solver_key when a solve names none (`ddib tune-solver --make-default`); from config.json.
        self.default_steps: dict[str, int] = {}
        # Solves chosen by quality per solver_key (`ddib bench quality --save-presets`, `bridge.presets`).
        self.quality_presets: dict[str, dict] = {}

    def derive(self, net: nn.Module | None = None, config: DiffusionConfig | None = None, **changes) -> Diffusion:
        """The same model with another network wrapper, config, label or guidance (the weights are shared)."""
        out = Diffusion(net or self.net, config or self.config, changes.get("label", self.label),
                        changes.get("guidance", self.guidance), changes.get("classifier", self.classifier))  # fmt: skip
        out.solver_grids, out.default_steps = self.solver_grids, self.default_steps
        out.quality_presets = self.quality_presets
        if config is None:  # the same schedule, solved over the same span (`within`)
            out.schedule = self.schedule
        return out

    def within(self, sigma_max: float) -> Diffusion:
        """The same model solved only up to σ̄ = `sigma_max` (a bridge's two ends meet where both reach); grids
        tuned for the whole span do not apply to the shorter one."""
        if sigma_max >= self.schedule.sigma_max:
            return self
        out = self.derive()
        out.schedule = self.schedule.within(sigma_max)
        out.solver_grids = {}
        return out

    def grid_key(self, solver: str, steps: int) -> str:
        """Where a tuned grid of this model for `solver` × `steps` is kept ('unipc:10', or 'unipc:10#5' for label 5)."""
        return f"{solver}:{steps}" + ("" if self.label is None else f"#{self.label}")

    def solver_key(self, solver: str) -> str:
        """Where this model's default step count for `solver` is kept ('unipc', or 'unipc#5' for label 5)."""
        return solver + ("" if self.label is None else f"#{self.label}")

    @property
    def num_classes(self) -> int:
        """Classes of a conditional network; 0 for an unconditional one."""
        return getattr(getattr(unwrap(self.net), "config", None), "num_classes", 0)

    @property
    def label_count(self) -> int:
        """The classes a label may name: the network's, else its noisy classifier's; 0 for neither."""
        return self.num_classes or (self.classifier.classes if self.classifier is not None else 0)

    def with_label(self, label: int | None, guidance: float = 0.0) -> Diffusion:
        """The same network (shared weights, not copied) as the denoiser of class `label` (None: the union); an
        unconditional network's label is its noisy classifier's class, which only guided decodes use."""
        if self.label_count == 0:
            raise DDIBError("this model is not class-conditional: it has no labels")
        return self.derive(label=label, guidance=guidance)

    def use_symmetry(self, name: str) -> Diffusion:
        """The same network (shared) averaging ε̂ over another colour-symmetry group (an inference choice)."""
        check_symmetry(name, self.data_shape, self.config.color_space, self.config.quotient)
        return self.derive(config=dataclasses.replace(self.config, symmetry=name))

    @property
    def data_shape(self) -> tuple[int, ...]:
        return unwrap(self.net).config.data_shape

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε̂(x_t, t), averaged over the config's channel-permutation group; t is a scalar or a (B,) tensor (kept in
        float64 when given so: a DDPM table's timestep n = t·(T−1) needs more than float32's digits of t)."""
        dtype = torch.float64 if torch.is_tensor(t) and t.dtype == torch.float64 else x_t.dtype
        t = torch.as_tensor(t, dtype=dtype, device=x_t.device).expand(x_t.shape[0])
        return group_average(self._network_eps, x_t, t, self.config.symmetry)

    def eps_bar(self, x_bar: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
        """ε̂ in the DDIM coordinates, ε̂(α(σ̄)·x̄, t(σ̄)): the probability-flow drift dx̄/dσ̄ (ode.py)."""
        alpha = self.schedule.alpha_of_sigma_bar(sigma_bar)
        t = self.schedule.t_of_sigma_bar(sigma_bar)
        return self.eps(x_bar * alpha.to(x_bar.dtype) if torch.is_tensor(alpha) else x_bar * alpha, t)

    def noise_input(self, t: torch.Tensor) -> torch.Tensor:
        """The network's conditioning scalar: t, (ln σ̄(t) − ln σ̄_min)/(ln σ̄_max − ln σ̄_min) ∈ [0, 1], or the
        schedule's timestep (a DDPM table's n = t·(T−1), times `timestep_scale`; a VE schedule's σ)."""
        if self.config.noise_input == "t":
            return t
        if self.config.noise_input == "timestep":
            return self.schedule.timestep(t) * self.config.timestep_scale
        lo, hi = self.config.sigma_min, self.config.sigma_max  # the whole span, whatever this model is solved over
        return (torch.log(self.schedule.sigma_bar(t) / lo)) / math.log(hi / lo)

    def _labels(self, batch: int, label: int | None, device: torch.device) -> torch.Tensor:
        """(B,) label indices; the null label (index num_classes) stands for "no label"."""
        return torch.full((batch,), self.num_classes if label is None else label, dtype=torch.long, device=device)

    @property
    def hue_quotient(self) -> bool:
        """Whether the model is of its domain's hue-0 slice: images enter with their hue removed (`image_hue`)."""
        return self.config.quotient == "hue"

    def image_hue(self, images: torch.Tensor) -> torch.Tensor | None:
        """What a hue-quotient model leaves out of an image: its hue θ (radians, per image; `color.hue_angle`);
        None for other models, whose latent keeps everything."""
        return hue_angle(images) if self.hue_quotient else None

    @property
    def data_bounds(self) -> tuple[float, float]:
        """The box the model's images lie in, in its own coordinates: [-1, 1], or [0, 1] for uncentred data."""
        return (-1.0, 1.0) if self.config.centered else (0.0, 1.0)

    @property
    def log_scale(self) -> float:
        """ln |dx/dy| per dimension of the affine map from images y in [-1, 1] to model coordinates x (likelihoods of
        the same images under models of different data ranges differ by it)."""
        return 0.0 if self.config.centered else math.log(0.5)

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] RGB → the coordinates the diffusion runs in (the HSV cone for `cone` models, [0, 1] for
        uncentred ones); a hue-quotient model first turns each image to hue 0, x ↦ R(−θ(x))·x (canonicalisation,
        Kaba et al. 2023)."""
        if self.hue_quotient:
            images = rotate_hue(images, -hue_angle(images))
        if self.config.color_space == "cone":
            return rgb_to_cone(images)
        return images if self.config.centered else (images + 1) / 2

    def to_images(self, x: torch.Tensor, hue: torch.Tensor | None = None) -> torch.Tensor:
        """The diffusion's coordinates → images in [-1, 1] RGB (inverse of `to_model_space`); a hue-quotient model's
        images turned from hue 0 to `hue` (radians, per image), its inverse given the θ that `image_hue` took out."""
        if self.config.color_space == "cone":
            images = cone_to_rgb(x)
        else:
            images = x if self.config.centered else 2 * x - 1
        if hue is None:
            return images
        if not self.hue_quotient:
            raise DDIBError("only a hue-quotient model (ddib train --quotient hue) takes a hue to decode with")
        return rotate_hue(images, hue.to(images.dtype))

    def _net(self, x_t: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output; for `cone` models in the frame where the image's chroma points along hue 0.

        f(x) = R_θ(x)·net(R_θ(x)⁻¹·x) with θ(x) the angle of the summed chroma (`color.chroma_angle`) is exactly
        equivariant to every hue rotation R, since θ(R·x) = θ(x) + angle(R) (canonicalisation, Kaba et al. 2023):
        the network itself need not learn how colour turns.
        """
        if self.config.color_space != "cone":
            return self.net(x_t, c_noise) if labels is None else self.net(x_t, c_noise, labels)
        theta = chroma_angle(x_t)
        x_canon = rotate_chroma(x_t, -theta)
        out = self.net(x_canon, c_noise) if labels is None else self.net(x_canon, c_noise, labels)
        return rotate_chroma(out, theta.to(out.dtype))

    def _network_eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's own ε̂ (from its ε, v or x_0 output), guided when `guidance` is set."""
        c_noise = self.noise_input(t).to(x_t.dtype)
        if self.num_classes == 0:
            out = self._net(x_t, c_noise)
        elif not self.guidance:
            out = self._net(x_t, c_noise, self._labels(x_t.shape[0], self.label, x_t.device))
        else:  # both outputs in one batch; the combination is linear, so it commutes with v → ε below
            b = x_t.shape[0]
            labels = torch.cat([self._labels(b, self.label, x_t.device), self._labels(b, None, x_t.device)])
            cond, uncond = self._net(torch.cat([x_t, x_t]), torch.cat([c_noise, c_noise]), labels).chunk(2)
            out = cond + self.guidance * (cond - uncond)
        out = out.to(x_t.dtype)
        if self.config.prediction == "eps":
            return out
        alpha, sigma = (append_dims(c.to(x_t.dtype), x_t.ndim) for c in self.schedule.alpha_sigma(t))
        if self.config.prediction == "sample":
            return (x_t - alpha * out) / sigma  # ε from x_t = α·x_0 + σ·ε
        # ε = α·v + σ·x_t, from v = α·ε − σ·x_0 and x_t = α·x_0 + σ·ε with α² + σ² = 1.
        return alpha * out + sigma * x_t

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps(x_t, t)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
             label_dropout: float = 0.0) -> torch.Tensor:  # fmt: skip
        """E_{t,ε} ‖target − net(α x_0 + σ ε, t[, y])‖², target ε (Ho et al. 2020) or v = αε − σx_0; t ~ U[0, 1).

        `x0` are images in [-1, 1] RGB (taken to the model's colour space here).

        `labels` (conditional networks) are replaced by the null label with probability `label_dropout`, so the
        network also learns the unconditional model of the union (classifier-free guidance's training).
        """
        x0 = self.to_model_space(x0)
        b = x0.shape[0]
        # Stratified (low-discrepancy) t, as in VDM: one uniform offset, B evenly spaced strata.
        u = torch.rand((), generator=generator, device=x0.device, dtype=x0.dtype)
        t = torch.remainder(u + torch.arange(b, device=x0.device, dtype=x0.dtype) / b, 1.0)
        t = t[torch.randperm(b, generator=generator, device=x0.device)]
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        alpha, sigma = (append_dims(c, x0.ndim) for c in self.schedule.alpha_sigma(t))
        if labels is not None:
            drop = torch.rand(b, generator=generator, device=x0.device) < label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        out = self._net(alpha * x0 + sigma * noise, self.noise_input(t), labels)
        target = {"eps": noise, "v": alpha * noise - sigma * x0, "sample": x0}[self.config.prediction]
        return torch.mean((out.float() - target.float()) ** 2)
