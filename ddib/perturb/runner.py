"""Latent perturbation experiments: encode once, edit the latent, decode with the target model, measure.

`PerturbRunner` holds a source model, a target model and a batch of inputs. It encodes the inputs once
(and decodes them once, unperturbed, as the reference translation), then for each experiment applies a
`Perturbation` at every coefficient of its sweep and decodes all the perturbed latents in batches. Image-
space steps (blur the image before encoding) force one extra encode per coefficient, also batched.

Per row it reports how the perturbed latent looks next to N(0, I) and what the decoded images are:

- latent mean and std over all values of the batch;
- normality: the Kolmogorov–Smirnov distance D = sup_v |F_n(v) − Φ(v)| between the pooled values, each
  sample first standardised by its own mean and std, and N(0, 1) (0 for a perfect match; for i.i.d.
  Gaussian values D ≈ 0.87/√n, about 0.006 for 8 images of 3×32×32), with the skewness and excess kurtosis
  of the same values (both 0 for a Gaussian). Standardising first makes D measure the *shape* of the
  distribution only; mean and std are reported beside it;
- neighbour correlation: the mean correlation of horizontally and vertically adjacent standardised
  values, ≈ 0 for white noise (what the decoder expects), → 1 for a smooth latent (after blur);
- share of outputs the bundled classifier reads as the target digit (digit target domains only) and the
  median hue error between inputs and outputs (3-channel models only), as in `ddib evaluate`.

The latent is shown in figures as clamp(z, −2.5, 2.5)/2.5, its channels as RGB: 0 is mid grey, ±2.5σ
and beyond saturate.

`REPORT_PRESET` lists the experiments of the DDIB colored-MNIST report as data; the CLI runs them with
`ddib perturb --preset report`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from ..bridge import ode, pipeline
from ..bridge.latent import Latent
from ..errors import DDIBError
from ..evaluation.classifier import DigitClassifier, predict
from ..evaluation.metrics import hue_errors, quantile
from ..model.diffusion import Diffusion
from .latent_ops import Perturbation, Step

LATENT_CLIP = 2.5
# The fixed noise is drawn with seed + this offset, so that it never equals the starting noise of a source
# sampled with the same seed (that latent would be the source's own, and checkerboard-with-noise a no-op).
NOISE_SEED_OFFSET = 1_000_003
REFERENCE_LABEL = "translation\n(no perturbation)"


def noise_seed(seed: int) -> int:
    return int(seed) + NOISE_SEED_OFFSET


# ------------------------------------------------------------------------------------ latent statistics


def _standardised(z: torch.Tensor) -> torch.Tensor:
    z = z.detach().double().flatten(1)
    std = z.std(dim=1, keepdim=True, correction=0).clamp_min(1e-12)
    return (z - z.mean(dim=1, keepdim=True)) / std


def ks_normal_distance(z: torch.Tensor) -> float:
    """D = sup_v |F_n(v) − Φ(v)| of the pooled per-sample-standardised values of z against N(0, 1)."""
    v = _standardised(z).flatten().sort().values
    n = v.numel()
    if n == 0:
        return math.nan
    cdf = 0.5 * (1 + torch.erf(v / math.sqrt(2)))
    i = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    return max((i / n - cdf).max().item(), (cdf - (i - 1) / n).max().item())


def skew_kurtosis(z: torch.Tensor) -> tuple[float, float]:
    """(E[u³], E[u⁴] − 3) of the pooled per-sample-standardised values u of z: (0, 0) for a Gaussian."""
    u = _standardised(z)
    return u.pow(3).mean().item(), (u.pow(4).mean() - 3).item()


def neighbour_correlation(z: torch.Tensor) -> float:
    """Mean of E[u(i, j)·u(i, j+1)] and E[u(i, j)·u(i+1, j)] over standardised values u: 0 for white noise."""
    u = _standardised(z).view_as(z)
    parts = []
    if z.shape[-1] > 1:
        parts.append((u[..., :, 1:] * u[..., :, :-1]).mean())
    if z.shape[-2] > 1:
        parts.append((u[..., 1:, :] * u[..., :-1, :]).mean())
    return torch.stack(parts).mean().item() if parts else math.nan


@dataclass(frozen=True)
class LatentStats:
    mean: float
    std: float
    ks: float
    skew: float
    excess_kurtosis: float
    neighbour_corr: float


def latent_stats(z: torch.Tensor) -> LatentStats:
    """Mean, std, KS distance to N(0, 1), skewness, excess kurtosis, neighbour correlation of a latent batch."""
    zd = z.detach().double()
    skew, kurt = skew_kurtosis(zd)
    return LatentStats(
        mean=zd.mean().item(),
        std=zd.std(correction=0).item(),
        ks=ks_normal_distance(zd),
        skew=skew,
        excess_kurtosis=kurt,
        neighbour_corr=neighbour_correlation(zd),
    )


def latent_to_image(z: torch.Tensor, clip: float = LATENT_CLIP) -> torch.Tensor:
    """clamp(z, −clip, clip)/clip: a latent as an image in [-1, 1] (0 → mid grey), channels shown as RGB."""
    return z.detach().float().clamp(-clip, clip).div(clip).cpu()


# ------------------------------------------------------------------------------------------ experiments


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment: a plan and its coefficient sweep (None: the plan's default; () : reference only)."""

    key: str  # "3a"
    name: str  # file-name slug, e.g. "noise-normalized"
    title: str
    plan: Perturbation
    coefs: tuple[float | None, ...] | None = None

    def sweep(self) -> tuple[float | None, ...]:
        if not self.plan.steps:
            return ()
        coefs = self.plan.default_coefs() if self.coefs is None else self.coefs
        return tuple(self.plan.check_coef(c) for c in coefs)

    def slug(self) -> str:
        return f"{self.key}-{self.name}"

    def with_settings(self, **kwargs) -> ExperimentSpec:
        """The same experiment with plan settings (cell, scale, seed, noise) replaced."""
        return ExperimentSpec(self.key, self.name, self.title, self.plan.with_settings(**kwargs), self.coefs)


def _exp(key, name, title, ops, coefs=None, **plan) -> ExperimentSpec:
    return ExperimentSpec(key, name, title, Perturbation(tuple(Step.parse(o) for o in ops), **plan), coefs)


MIX = (0.01, 0.1, 0.3, 0.7)
BLEND = (0.1, 0.3, 0.5, 0.7, 0.9)
CHECKER = (0.1, 0.3, 0.5, 0.7, 1.0)
SIGMAS = (0.5, 1.0, 1.5, 2.0)

# The experiments of the DDIB colored-MNIST report, one figure each. 7b applies the 2×2 rotation twice
# (each block turned 180°) rather than rotating a normalized latent: a rotation only permutes values within a
# sample, so it keeps the per-sample mean and std and commutes with normalize; "rotate on normalized" would
# be experiment 2 (s = 1) followed by 7a, while rotating twice tests how far the decoder tolerates a larger,
# still measure-preserving, rearrangement.
REPORT_PRESET: tuple[ExperimentSpec, ...] = (
    _exp("1", "translation", "1: plain translation (no perturbation; the reference row of every figure)", ()),
    _exp("2", "normalize", "2: normalize, z' = s*(z - mean)/std, scale sweep", ("normalize",), SIGMAS),
    _exp("3a", "noise-normalized", "3a: fixed noise on the normalized latent", ("noise",), MIX, base="normalized"),
    _exp("3b", "noise-source", "3b: fixed noise on the source latent", ("noise",), MIX),
    _exp("4a", "blend-source", "4a: blend with the image, source base", ("blend",), BLEND),
    _exp("4b", "blend-normalized", "4b: blend with the image, normalized base", ("blend",), BLEND, base="normalized"),
    _exp("5a", "checker-image-source", "5a: checkerboard with the image, source base", ("checkerboard",), CHECKER),
    _exp(
        "5b",
        "checker-image-normalized",
        "5b: checkerboard with the image, normalized base",
        ("checkerboard",),
        CHECKER,
        base="normalized",
    ),
    _exp(
        "6a",
        "checker-noise-source",
        "6a: checkerboard with fixed noise, source base",
        ("checkerboard",),
        CHECKER,
        other="noise",
    ),
    _exp(
        "6b",
        "checker-noise-normalized",
        "6b: checkerboard with fixed noise, normalized base",
        ("checkerboard",),
        CHECKER,
        other="noise",
        base="normalized",
    ),
    _exp("7a", "rotate2x2", "7a: 2x2 block rotation, once (clockwise)", ("rotate2x2",)),
    _exp("7b", "rotate2x2-twice", "7b: 2x2 block rotation, twice (180 degrees)", ("rotate2x2", "rotate2x2")),
    _exp("8a", "blur-image", "8a: blur the image before encoding", ("blur-image",), SIGMAS),
    _exp("8b", "blur-latent", "8b: blur the latent", ("blur",), SIGMAS),
    _exp("8c", "rotate-blur", "8c: 2x2 rotation, then blur the latent", ("rotate2x2", "blur"), (0.5, 1.0, 2.0)),
    _exp("8d", "blur-twice", "8d: blur the latent twice (same sigma)", ("blur", "blur"), (0.5, 1.0, 1.5)),
)

PRESETS: dict[str, tuple[ExperimentSpec, ...]] = {"report": REPORT_PRESET}


def parse_coefs(text: str) -> tuple[float, ...]:
    """'0.01,0.1,0.3' → (0.01, 0.1, 0.3)."""
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(float(item))
        except ValueError:
            raise DDIBError(f"--coef {text}: {item!r} is not a number (give a comma list like 0.1,0.3)") from None
    return tuple(values)


def experiment_from_ops(ops: list[str], coef_text: str | None, base: str, other: str, settings: dict) -> ExperimentSpec:
    """One experiment from `--op` texts (in order) and an optional `--coef` sweep, every coefficient validated."""
    plan = Perturbation(tuple(Step.parse(o) for o in ops), base=base, other=other, **settings)
    coefs = parse_coefs(coef_text) if coef_text is not None else None
    if coefs is not None and not plan.takes_coef:
        raise DDIBError(f"--coef given but no op of {plan.ops_text()} takes a coefficient")
    spec = ExperimentSpec("perturb", "-".join(s.op for s in plan.steps), plan.describe(), plan, coefs)
    spec.sweep()  # validates every coefficient before anything is loaded
    return spec


def preset(name: str) -> tuple[ExperimentSpec, ...]:
    if name not in PRESETS:
        raise DDIBError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]


# -------------------------------------------------------------------------------------------- results


@dataclass
class RowResult:
    """Numbers of one figure row: the reference translation or one coefficient of an experiment."""

    experiment: str
    label: str
    ops: str
    base: str
    other: str | None
    coef: float | None
    latent_mean: float
    latent_std: float
    ks: float
    skew: float
    excess_kurtosis: float
    neighbour_corr: float
    target_share: float | None
    hue_error_median: float | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExperimentResult:
    """One experiment's rows (one per coefficient) with their decoded images, and the shared reference."""

    spec: ExperimentSpec
    reference: RowResult
    rows: list[RowResult]
    outputs: list[torch.Tensor] = field(repr=False)
    perturbed_inputs: list[torch.Tensor] | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "key": self.spec.key,
            "title": self.spec.title,
            "plan": self.spec.plan.describe(),
            "coefs": list(self.spec.sweep()),
            "reference": self.reference.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
        }


class PerturbRunner:
    """Encode `inputs` once with `source`; decode perturbed latents with `target`; measure every row."""

    def __init__(
        self,
        source: Diffusion,
        target: Diffusion,
        inputs: torch.Tensor,
        options: ode.ODEOptions = ode.ODEOptions(),
        classifier: DigitClassifier | None = None,
        target_digit: int | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        on_images: Callable[[int], None] | None = None,
    ):
        ode.check_compatible(source, target)
        if inputs.ndim != 4 or tuple(inputs.shape[1:]) != tuple(source.data_shape):
            raise DDIBError(
                f"inputs have shape {tuple(inputs.shape)} but the models take (B, "
                f"{', '.join(str(s) for s in source.data_shape)})"
            )
        if len(inputs) == 0:
            raise DDIBError("no inputs to perturb")
        if batch_size < 1:
            raise DDIBError("batch size must be at least 1")
        self.source, self.target = source, target
        self.inputs = inputs.detach().float().cpu()
        self.options = options
        self.classifier = classifier if target_digit is not None else None
        self.target_digit = target_digit
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.on_images = on_images
        self.encode_stats, self.decode_stats = ode.SolveStats(), ode.SolveStats()
        self._latent: Latent | None = None
        self._reference: tuple[torch.Tensor, RowResult] | None = None

    # -- cost accounting, so a caller can size a progress bar
    def work(self, specs: Sequence[ExperimentSpec]) -> int:
        """Images that will pass through an ODE solve (encode or decode) to run `specs` from scratch."""
        n = len(self.inputs)
        total = 2 * n  # encode the inputs, decode the reference
        for spec in specs:
            k = len(spec.sweep())
            total += n * k * (2 if spec.plan.acts_on_image else 1)
        return total

    def _tick(self, k: int) -> None:
        if self.on_images is not None:
            self.on_images(k)

    def _batches(self, model: Diffusion) -> tuple[Diffusion, Callable[[pipeline.Progress], None] | None]:
        """The model on the runner's device, and a progress hook that ticks per finished batch."""
        return model.to(self.device), pipeline.per_batch(self._tick)

    def _encode(self, x: torch.Tensor) -> Latent:
        model, hook = self._batches(self.source)
        batches = pipeline.encode_batches(model, x, self.options, self.batch_size, hook, self.encode_stats)
        return pipeline.collect(batches)[0].to(self.device)

    def _decode(self, latent: Latent) -> torch.Tensor:
        """decode(target, z), turned to the hues that travel beside z between hue-quotient models."""
        model, hook = self._batches(self.target)
        return pipeline.collect(pipeline.decode_batches(model, latent, self.options, self.batch_size, hook,
                                                        self.decode_stats))[0]  # fmt: skip

    @property
    def latent(self) -> Latent:
        """encode(source, inputs) with what travels beside z, computed once (on the runner's device)."""
        if self._latent is None:
            self._latent = self._encode(self.inputs)
        return self._latent

    def _row(self, experiment: str, label: str, plan: Perturbation | None, coef, z, outputs) -> RowResult:
        s = latent_stats(z)
        share = hue = None
        if self.classifier is not None:
            labels, _ = predict(self.classifier, outputs)
            share = (labels == self.target_digit).float().mean().item()
        if outputs.shape[1] == 3:
            hue = quantile(hue_errors(self.inputs, outputs), 0.5)
        return RowResult(
            experiment=experiment,
            label=label.replace("\n", " "),
            ops=plan.ops_text() if plan is not None and plan.steps else "none",
            base=plan.base if plan is not None else "source",
            other=plan.other if plan is not None and any(t.op == "checkerboard" for t in plan.steps) else None,
            coef=coef,
            latent_mean=s.mean,
            latent_std=s.std,
            ks=s.ks,
            skew=s.skew,
            excess_kurtosis=s.excess_kurtosis,
            neighbour_corr=s.neighbour_corr,
            target_share=share,
            hue_error_median=hue,
        )

    @property
    def reference(self) -> tuple[torch.Tensor, RowResult]:
        """(decode(target, z) of the unperturbed latent, its numbers), computed once."""
        if self._reference is None:
            y = self._decode(self.latent)
            self._reference = (y, self._row("reference", REFERENCE_LABEL, None, None, self.latent.z, y))
        return self._reference

    def run(self, spec: ExperimentSpec) -> ExperimentResult:
        """Every coefficient of `spec`'s sweep: perturb (image steps, encode, latent steps), decode, measure."""
        plan, coefs = spec.plan, spec.sweep()
        ref_images, ref_row = self.reference
        if not coefs:
            return ExperimentResult(spec, ref_row, [], [])
        n = len(self.inputs)
        x = self.inputs
        perturbed_inputs = None
        if plan.acts_on_image:
            perturbed_inputs = [plan.apply_image(x, c) for c in coefs]
            encoded = self._encode(torch.cat(perturbed_inputs))
            latents = [encoded[i * n : (i + 1) * n] for i in range(len(coefs))]
        else:
            latents = [self.latent] * len(coefs)
        xd = self.source.to_model_space(x.to(self.device))  # what blends into a latent: the image where it lives
        perturbed = [plan.apply(z, xd, c) for z, c in zip(latents, coefs, strict=True)]
        decoded = self._decode(Latent.cat(perturbed))
        outputs = [decoded[i * n : (i + 1) * n] for i in range(len(coefs))]
        rows = [
            self._row(spec.key, plan.label(c), plan, c, zp.z, y)
            for c, zp, y in zip(coefs, perturbed, outputs, strict=True)
        ]
        return ExperimentResult(spec, ref_row, rows, outputs, perturbed_inputs)
