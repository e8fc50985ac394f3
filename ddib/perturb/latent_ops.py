"""Perturbations of DDIB latents: what happens to a translation when z is edited between encode and decode.

Every op is a pure, batched function on latents z of shape (B, C, H, W) (or, for the image-space blur, on
images x in [-1, 1] before encoding). Ops never modify their inputs, work on any device and dtype, and raise
`DDIBError` (one line) on a coefficient out of range or on tensors whose shapes do not fit together.

Several ops start from a *base* latent, chosen by the caller: ``"source"`` is z itself, ``"normalized"`` is
``normalize(z, scale)``. The fixed noise ε is one Gaussian sample of shape (1, C, H, W), drawn on the CPU
from a seeded generator and shared by the whole batch, so every image gets the same perturbation.

`OPS` describes each op (coefficient, valid range, default sweep, whether it acts on the image or the
latent); `Perturbation` composes ops into a plan applied in order, image-space steps before encoding and
latent steps after it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from ..bridge.latent import Latent
from ..errors import DDIBError

BASES = ("source", "normalized")
OTHERS = ("image", "noise")
_STD_EPS = 1e-12


# --------------------------------------------------------------------------------------------- checks


def _check_latent(z: torch.Tensor, name: str = "latent") -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 4:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise DDIBError(f"expected a {name} batch of shape (B, C, H, W), got {shape}")


def _check_same_shape(z: torch.Tensor, x: torch.Tensor, what: str = "image") -> None:
    _check_latent(z)
    _check_latent(x, what)
    if tuple(z.shape) != tuple(x.shape):
        raise DDIBError(f"latent shape {tuple(z.shape)} and {what} shape {tuple(x.shape)} differ; they must match")


def _check_broadcast(z: torch.Tensor, other: torch.Tensor, what: str) -> None:
    _check_latent(z)
    _check_latent(other, what)
    if tuple(other.shape[1:]) != tuple(z.shape[1:]) or other.shape[0] not in (1, z.shape[0]):
        raise DDIBError(
            f"{what} shape {tuple(other.shape)} does not fit latent shape {tuple(z.shape)} "
            f"(need (1 or {z.shape[0]}, {', '.join(str(s) for s in z.shape[1:])}))"
        )


def check_range(name: str, value: float, lo: float | None, hi: float | None) -> float:
    """`value` as a float if lo ≤ value ≤ hi (None: unbounded), else a one-line DDIBError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DDIBError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise DDIBError(f"{name} must be a finite number, got {value}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise DDIBError(f"{name} = {value:g} is out of range; valid: {_range_text(lo, hi)}")
    return v


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"[{lo:g}, {hi:g}]"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any number"


def _check_base(base: str) -> None:
    if base not in BASES:
        raise DDIBError(f"unknown base {base!r}; choose one of {', '.join(BASES)}")


# ---------------------------------------------------------------------------------------------- ops


def normalize(z: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """z' = s · (z − mean(z)) / std(z), mean and (population) std over C, H, W of each sample; s = scale ≥ 0."""
    _check_latent(z)
    s = check_range("normalize scale", scale, 0.0, None)
    dims = tuple(range(1, z.ndim))
    mean = z.mean(dim=dims, keepdim=True)
    std = z.std(dim=dims, keepdim=True, correction=0).clamp_min(_STD_EPS)
    return s * (z - mean) / std


def choose_base(z: torch.Tensor, base: str = "source", scale: float = 1.0) -> torch.Tensor:
    """base(z) = z for base "source", normalize(z, scale) for base "normalized"."""
    _check_base(base)
    _check_latent(z)
    return normalize(z, scale) if base == "normalized" else z


def fixed_noise(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """ε ~ N(0, I) of shape (1, C, H, W) from torch.Generator().manual_seed(seed) on the CPU, float32."""
    dims = tuple(int(s) for s in shape)
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3 or any(s < 1 for s in dims):
        raise DDIBError(f"fixed noise needs a shape (C, H, W) or (B, C, H, W), got {tuple(shape)}")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((1, *dims), generator=gen, device="cpu", dtype=torch.float32)


def _noise_like(z: torch.Tensor, noise: torch.Tensor | None, seed: int) -> torch.Tensor:
    eps = fixed_noise(z.shape[1:], seed) if noise is None else noise
    _check_broadcast(z, eps, "noise")
    return eps.to(device=z.device, dtype=z.dtype)


def mix_noise(
    z: torch.Tensor,
    c: float,
    seed: int = 0,
    base: str = "source",
    scale: float = 1.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """z' = base(z) + c · ε with one fixed ε (from `seed`, or `noise`) shared by the batch; c ≥ 0."""
    c = check_range("noise coefficient c", c, 0.0, None)
    b = choose_base(z, base, scale)
    return b + c * _noise_like(z, noise, seed)


def blend(z: torch.Tensor, x: torch.Tensor, p: float, base: str = "source", scale: float = 1.0) -> torch.Tensor:
    """z' = (1 − p) · base(z) + p · x, x the image in [-1, 1]: p = 0 keeps the latent, p = 1 gives the image."""
    p = check_range("blend coefficient p", p, 0.0, 1.0)
    _check_same_shape(z, x)
    b = choose_base(z, base, scale)
    return (1 - p) * b + p * x.to(device=z.device, dtype=z.dtype)


def checkerboard_mask(h: int, w: int, k: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (h, w) mask of k×k cells: pixel (i, j) selected when (i // k + j // k) is even (top-left: on)."""
    if int(k) != k or k < 1:
        raise DDIBError(f"checkerboard cell size must be a positive integer, got {k}")
    if h < 1 or w < 1:
        raise DDIBError(f"checkerboard mask needs a positive size, got {h}×{w}")
    i = torch.arange(h, device=device).div(int(k), rounding_mode="floor")
    j = torch.arange(w, device=device).div(int(k), rounding_mode="floor")
    return (i[:, None] + j[None, :]) % 2 == 0


def checkerboard(
    z: torch.Tensor,
    other: torch.Tensor,
    c: float,
    k: int = 1,
    base: str = "source",
    scale: float = 1.0,
) -> torch.Tensor:
    """z' = (1 − c)·base(z) + c·other on the cells of `checkerboard_mask`, base(z) elsewhere; c ∈ [0, 1]."""
    c = check_range("checkerboard coefficient c", c, 0.0, 1.0)
    _check_broadcast(z, other, "checkerboard source ('other')")
    b = choose_base(z, base, scale)
    mask = checkerboard_mask(z.shape[-2], z.shape[-1], k, device=z.device)
    mixed = (1 - c) * b + c * other.to(device=z.device, dtype=z.dtype)
    return torch.where(mask, mixed, b)


def rotate2x2(z: torch.Tensor) -> torch.Tensor:
    """Each 2×2 block of each channel turned clockwise, [[a, b], [c, d]] → [[c, a], [d, b]]; odd last row/col kept."""
    _check_latent(z)
    n, ch, h, w = z.shape
    h2, w2 = h - h % 2, w - w % 2
    out = z.clone()
    if h2 and w2:
        blocks = z[..., :h2, :w2].reshape(n, ch, h2 // 2, 2, w2 // 2, 2).permute(0, 1, 2, 4, 3, 5)
        turned = torch.rot90(blocks, k=-1, dims=(-2, -1))  # k = -1: clockwise
        out[..., :h2, :w2] = turned.permute(0, 1, 2, 4, 3, 5).reshape(n, ch, h2, w2)
    return out


def blur_kernel_size(sigma: float, size: int) -> int:
    """Odd kernel size 2·ceil(3σ) + 1, capped to the largest odd number ≤ size."""
    k = 2 * math.ceil(3 * sigma) + 1
    cap = size if size % 2 else size - 1
    return max(1, min(k, cap))


def blur(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """z' = G_σ ∗ z per channel (torchvision gaussian_blur, reflect padding, kernel 2·ceil(3σ)+1 capped); σ ≥ 0."""
    _check_latent(z)
    sigma = check_range("blur sigma", sigma, 0.0, None)
    kh, kw = blur_kernel_size(sigma, z.shape[-2]), blur_kernel_size(sigma, z.shape[-1])
    if sigma == 0 or (kh == 1 and kw == 1):
        return z.clone()
    from torchvision.transforms.v2 import functional as TF  # here: importing torchvision slows every command's start

    return TF.gaussian_blur(z, kernel_size=[kw, kh], sigma=[sigma, sigma])


def blur_image(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x' = G_σ ∗ x: the same Gaussian blur as `blur`, applied to the image in [-1, 1] before encoding."""
    _check_latent(x, "image")
    return blur(x, sigma)


# ------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class OpSpec:
    """One op: what its coefficient means, its valid range, its default sweep, and where it acts."""

    name: str
    formula: str
    space: str  # "latent": applied to z after encoding | "image": applied to x before encoding
    symbol: str | None = None  # coefficient's name in labels; None: the op takes no coefficient
    meaning: str = ""
    lo: float | None = None
    hi: float | None = None
    sweep: tuple[float, ...] = ()
    # (value, image, coef, plan, fixed noise) -> value': z for latent ops, the image itself for image ops.
    apply: Callable[..., torch.Tensor] | None = field(default=None, compare=False, repr=False)

    @property
    def takes_coef(self) -> bool:
        return self.symbol is not None

    def check(self, coef: float) -> float:
        return check_range(f"{self.name} {self.symbol}", coef, self.lo, self.hi)


OPS: dict[str, OpSpec] = {
    op.name: op
    for op in (
        OpSpec(
            "normalize",
            "z' = s*(z - mean)/std per sample",
            "latent",
            "s",
            "scale s of the standardised latent",
            0.0,
            None,
            (0.5, 1.0, 1.5, 2.0),
            apply=lambda z, x, c, plan, eps: normalize(z, c),
        ),
        OpSpec(
            "noise",
            "z' = z + c*eps, one fixed eps",
            "latent",
            "c",
            "weight c of the fixed noise added",
            0.0,
            None,
            (0.01, 0.1, 0.3, 0.7),
            apply=lambda z, x, c, plan, eps: mix_noise(z, c, noise=eps),
        ),
        OpSpec(
            "blend",
            "z' = (1-p)*z + p*x",
            "latent",
            "p",
            "share p of the image (0: latent, 1: image)",
            0.0,
            1.0,
            (0.1, 0.3, 0.5, 0.7, 0.9),
            apply=lambda z, x, c, plan, eps: blend(z, x, c),
        ),
        OpSpec(
            "checkerboard",
            "z' = (1-c)*z + c*other on cells with (i//k + j//k) even",
            "latent",
            "c",
            "weight c of the image/noise on the selected cells",
            0.0,
            1.0,
            (0.1, 0.3, 0.5, 0.7, 1.0),
            apply=lambda z, x, c, plan, eps: checkerboard(z, x if plan.other == "image" else eps, c, plan.cell),
        ),
        OpSpec(
            "rotate2x2",
            "[[a, b], [c, d]] -> [[c, a], [d, b]] per 2x2 block",
            "latent",
            apply=lambda z, x, c, plan, eps: rotate2x2(z),
        ),  # fmt: skip
        OpSpec(
            "blur",
            "z' = G_sigma * z per channel",
            "latent",
            "sigma",
            "Gaussian blur sigma (pixels) of the latent",
            0.0,
            None,
            (0.5, 1.0, 1.5, 2.0),
            apply=lambda z, x, c, plan, eps: blur(z, c),
        ),
        OpSpec(
            "blur-image",
            "x' = G_sigma * x before encoding",
            "image",
            "sigma",
            "Gaussian blur sigma (pixels) of the image",
            0.0,
            None,
            (0.5, 1.0, 1.5, 2.0),
            apply=lambda x, _, c, plan, eps: blur_image(x, c),
        ),
    )
}


def op_spec(name: str) -> OpSpec:
    """The spec of an op name, or a one-line error listing the valid ones."""
    if name not in OPS:
        raise DDIBError(f"unknown op {name!r}; valid ops: {', '.join(OPS)}")
    return OPS[name]


# -------------------------------------------------------------------------------------- composition


@dataclass(frozen=True)
class Step:
    """One op of a plan; `coef` fixes its coefficient, None makes it take the plan's swept coefficient."""

    op: str
    coef: float | None = None

    def __post_init__(self):
        spec = op_spec(self.op)
        if self.coef is not None:
            if not spec.takes_coef:
                raise DDIBError(f"op {self.op} takes no coefficient (got {self.op}={self.coef:g})")
            object.__setattr__(self, "coef", spec.check(self.coef))

    @classmethod
    def parse(cls, text: str) -> Step:
        """'blur' (takes the swept coefficient) or 'blur=1.5' (fixed coefficient)."""
        name, sep, value = text.strip().partition("=")
        if not sep:
            return cls(name.strip())
        try:
            coef = float(value)
        except ValueError:
            raise DDIBError(f"--op {text}: {value!r} is not a number") from None
        return cls(name.strip(), coef)

    @property
    def spec(self) -> OpSpec:
        return OPS[self.op]

    @property
    def sweeps(self) -> bool:
        return self.spec.takes_coef and self.coef is None

    def text(self) -> str:
        return self.op if self.coef is None else f"{self.op}={self.coef:g}"


@dataclass(frozen=True)
class Perturbation:
    """A plan: image steps (before encoding), then base(z), then latent steps, each in the order given.

    `apply_image(x, coef)` runs the image-space steps; the caller encodes the result. `apply(z, x, coef)` then
    forms base(z) (`base`, `scale`) and runs the latent steps on it in order; `x` is the original image
    (for blend, and checkerboard with `other="image"`). Steps without a fixed coefficient take the swept
    `coef`; checkerboard uses cells of `cell` pixels; fixed noise comes from `seed`.
    """

    steps: tuple[Step, ...] = ()
    base: str = "source"
    other: str = "image"
    scale: float = 1.0
    cell: int = 1
    seed: int = 0
    noise: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        steps = tuple(Step.parse(s) if isinstance(s, str) else s for s in self.steps)
        object.__setattr__(self, "steps", steps)
        _check_base(self.base)
        if self.other not in OTHERS:
            raise DDIBError(f"unknown checkerboard source {self.other!r}; choose one of {', '.join(OTHERS)}")
        check_range("normalize scale", self.scale, 0.0, None)
        checkerboard_mask(1, 1, self.cell)  # validates the cell size
        seen_latent = False
        for s in steps:
            if s.spec.space == "latent":
                seen_latent = True
            elif seen_latent:
                raise DDIBError(
                    f"op {s.op} acts on the image before encoding; put it before the latent ops "
                    f"({', '.join(t.op for t in steps if t.spec.space == 'latent')})"
                )

    @classmethod
    def of(cls, *ops: str, **kwargs) -> Perturbation:
        return cls(tuple(Step.parse(o) for o in ops), **kwargs)

    @property
    def image_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.spec.space == "image")

    @property
    def latent_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.spec.space == "latent")

    @property
    def acts_on_image(self) -> bool:
        return bool(self.image_steps)

    @property
    def sweep_specs(self) -> tuple[OpSpec, ...]:
        """Specs of the steps that take the swept coefficient."""
        return tuple(s.spec for s in self.steps if s.sweeps)

    @property
    def takes_coef(self) -> bool:
        return bool(self.sweep_specs)

    @property
    def symbol(self) -> str | None:
        specs = self.sweep_specs
        return specs[0].symbol if specs else None

    def default_coefs(self) -> tuple[float | None, ...]:
        """The first sweeping op's default sweep; (None,) for a plan with no coefficient to sweep."""
        return self.sweep_specs[0].sweep if self.takes_coef else (None,)

    def check_coef(self, coef: float | None) -> float | None:
        """Validate a swept coefficient against every step that takes it."""
        if not self.takes_coef:
            if coef is not None:
                names = ", ".join(s.op for s in self.steps) or "no op"
                raise DDIBError(f"a coefficient was given but no op of the plan takes one ({names})")
            return None
        if coef is None:
            raise DDIBError(f"ops {', '.join(s.op for s in self.steps if s.sweeps)} need a coefficient")
        for spec in self.sweep_specs:
            coef = spec.check(coef)
        return coef

    def with_settings(self, **kwargs) -> Perturbation:
        return replace(self, **kwargs)

    def _coef(self, step: Step, coef: float | None) -> float | None:
        return step.coef if step.coef is not None else coef

    def apply_image(self, x: torch.Tensor, coef: float | None = None) -> torch.Tensor:
        """x' = the image steps applied to x in order (x itself when there are none)."""
        _check_latent(x, "image")
        coef = self.check_coef(coef)
        for s in self.image_steps:
            x = s.spec.apply(x, None, self._coef(s, coef), self, None)
        return x

    def apply(self, latent: Latent | torch.Tensor, x: torch.Tensor | None, coef: float | None = None):
        """z' = the latent steps applied in order to base(z); image steps are `apply_image`'s, before encoding. A
        `Latent` comes back as one, with the hues and labels that travel beside z unchanged."""
        if isinstance(latent, Latent):
            return latent.with_z(self.apply(latent.z, x, coef))
        z = latent
        _check_latent(z)
        coef = self.check_coef(coef)
        steps = self.latent_steps
        needs_image = any(s.op == "blend" or (s.op == "checkerboard" and self.other == "image") for s in steps)
        if needs_image:
            if x is None:
                raise DDIBError("this perturbation mixes in the image, but no image was given")
            _check_same_shape(z, x)
        noise = None
        if any(s.op == "noise" or (s.op == "checkerboard" and self.other == "noise") for s in steps):
            noise = _noise_like(z, self.noise, self.seed)
        out = choose_base(z, self.base, self.scale)
        for s in steps:
            out = s.spec.apply(out, x, self._coef(s, coef), self, noise)
        return out

    def ops_text(self) -> str:
        """e.g. 'rotate2x2+blur' (used in file names)."""
        return "+".join(s.text() for s in self.steps) or "none"

    def describe(self) -> str:
        """Ops, base and checkerboard source in words, e.g. 'checkerboard with image, normalized base'."""
        parts = []
        for s in self.steps:
            t = s.text()
            if s.op == "checkerboard":
                t += f" with {self.other}" + (f" ({self.cell}x{self.cell} cells)" if self.cell != 1 else "")
            parts.append(t)
        text = " then ".join(parts) or "no perturbation"
        if self.base == "normalized":
            text += ", normalized base" + (f" (s={self.scale:g})" if self.scale != 1 else "")
        return text

    def label(self, coef: float | None) -> str:
        """Row label for a figure: ops and coefficient (ASCII), base on a second line when normalized."""
        head = "+".join(s.text() for s in self.steps) or "translation"
        if self.symbol is not None and coef is not None:
            head += f"\n{self.symbol}={coef:g}"
        extras = []
        if any(s.op == "checkerboard" for s in self.steps):
            extras.append(f"with {self.other}")
        if self.base == "normalized":
            extras.append("normalized")
        return head + ("\n" + ", ".join(extras) if extras else "")
