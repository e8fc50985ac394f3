"""The Python API of ddib: `load` a domain's model, `encode` images to a `Latent`, `decode` it, `translate` (DDIB,
Su et al. 2023, Alg. 1: decode(target, encode(source, x))), `sample`: the batch pipeline every `ddib` command
runs (`bridge.pipeline`), over images and models given by name or path.

Images are a float tensor (N, C, H, W) in [-1, 1], or a list of PIL images (then PIL images come back); point
domains take and give (N, 2) raw coordinates. The solve keywords (`solver`, `steps`, `quality`, `rtol`, `atol`,
`rho`, `tuned`, `clip`, `classifier_scale`, `batch_size`, `progress`) are those of the command line's options;
`speed` names kernel settings as `ddib bench speed` does ("fp16", "channels_last+compile", ...; default: the
device's measured best).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .bridge import ode, pipeline
from .bridge.latent import Latent
from .bridge.pipeline import Progress, ProgressFn
from .bridge.points import DEFAULT_POINT_BATCH
from .errors import DDIBError
from .io.images import check_resize, convert_image, to_pil, to_uint8, to_unit_range
from .likelihood.source_inference import DomainScore, check_method, score_batched
from .model.diffusion import Diffusion
from .model.registry import DomainModel, load_domain_model
from .model.speed import SpeedOptions, accelerate, accelerate_for, parse_speed
from .utils import resolve_device

__all__ = ["Latent", "Progress", "decode", "encode", "likelihoods", "load", "sample", "translate"]

Model = DomainModel | str | Path
Speed = SpeedOptions | str | None
_OPTION_NAMES = {f.name for f in fields(ode.ODEOptions)}


def load(name_or_path: str | Path, device: torch.device | str = "cpu", *, models_dir: str | Path | None = None,
         symmetry: str = "auto", guidance: float = 0.0, flags: str | dict | None = None) -> DomainModel:  # fmt: skip
    """A domain's model: a bundled or trained domain's name ("fives"), `NAME:LABEL` of a conditional model, or a
    path (a ddib run folder, a diffusers folder, a guided-diffusion `.pt` with its `flags`: guided-diffusion's
    MODEL_FLAGS text or a dict, else the JSON beside it), on `device` ("auto": CUDA, else MPS, else the CPU)."""
    device = resolve_device(str(device))
    return load_domain_model(str(name_or_path), models_dir, device, symmetry, guidance, flags)


def encode(model: Model, images, *, batch_size: int | None = None, progress: ProgressFn | None = None,
           resize: str = "crop", speed: Speed = None, **solve: Any) -> Latent:  # fmt: skip
    """z = ODESolve(x; model, t 0 → 1) (DDIB eq. 5) with what travels beside it (a hue-quotient image's hue)."""
    model = _model(model)
    x, _ = _as_model_input(model, images, resize)
    fast = _fast(model, speed)
    batches = pipeline.encode_batches(fast, x, _options(solve), _batch(model, batch_size), progress)
    (latent,) = pipeline.collect(batches)
    return latent.with_meta(source=model.name)


def decode(model: Model, latent: Latent | torch.Tensor, *, batch_size: int | None = None,
           progress: ProgressFn | None = None, pil: bool = False, speed: Speed = None, **solve: Any):  # fmt: skip
    """x = ODESolve(z; model, t 1 → 0), turned to the latent's hues: a (N, C, H, W) tensor in [-1, 1] (a list of
    PIL images with `pil=True`; (N, 2) raw coordinates for a point domain)."""
    model = _model(model)
    latent = latent if isinstance(latent, Latent) else Latent(latent)
    if tuple(latent.z.shape[1:]) != tuple(model.data_shape):
        raise DDIBError(f"latents have shape {tuple(latent.z.shape[1:])} but the {model.name} model expects "
                        f"{tuple(model.data_shape)}")  # fmt: skip
    if latent.hue is not None and not model.diffusion.hue_quotient:
        raise DDIBError(f"the latent carries hues (a hue-quotient encoder's); decode it with a hue-quotient model, "
                        f"not {model.name}")  # fmt: skip
    fast = _fast(model, speed)
    batches = pipeline.decode_batches(fast, latent, _options(solve), _batch(model, batch_size), progress)
    (y,) = pipeline.collect(batches)
    return _as_output(model, y, pil)


def translate(images, source: Model, target: Model, *, batch_size: int | None = None,
              progress: ProgressFn | None = None, resize: str = "crop", device: torch.device | str = "cpu",
              speed: Speed = None, **solve: Any):  # fmt: skip
    """DDIB (Su et al. 2023, Alg. 1): decode(target, encode(source, x)), the latent's hue carried between
    hue-quotient models; the result is of the input's kind (tensor, PIL list, point coordinates)."""
    src, tgt = _model(source, device), _model(target, device)
    ode.check_compatible(src.diffusion, tgt.diffusion)
    x, was_pil = _as_model_input(src, images, resize)
    fast_src, fast_tgt = _fast(src, speed), _fast(tgt, speed)
    batches = pipeline.translate_batches(fast_src, fast_tgt, x, _options(solve), _batch(src, batch_size), progress)
    _, y = pipeline.collect(batches)
    return _as_output(tgt, y, was_pil)


def sample(model: Model, n: int, *, seed: int = 0, batch_size: int | None = None,
           progress: ProgressFn | None = None, pil: bool = False, speed: Speed = None, **solve: Any):  # fmt: skip
    """decode(model, z) with z ~ N(0, I) (and a hue-quotient model's θ ~ U[0, 2π)), deterministic given `seed`."""
    if not _is_int(n) or n < 1:
        raise DDIBError(f"the number of samples must be a positive integer, got {n!r}")
    _check_seed(seed)
    model = _model(model)
    latent = ode.sample_latent(model.diffusion, n, torch.Generator().manual_seed(int(seed)))
    return decode(model, latent, batch_size=batch_size, progress=progress, pil=pil, speed=speed, **solve)


def likelihoods(models: Model | Sequence[Model], images, *, method: str = "ode", probes: int = 4, tol: float = 1e-4,
                levels: int = 16, seed: int = 0, batch_size: int | None = None, resize: str = "crop",
                progress: ProgressFn | None = None) -> dict[str, DomainScore]:  # fmt: skip
    """Bits/dim of 8-bit images under each model: the probability-flow ODE's log-likelihood (Song et al. 2021,
    "ode"), the diffusion ELBO (Kingma et al. 2021, "elbo") or its mid-noise band ("band", a score for ranking),
    with the same random draws for every model, batch by batch as `ddib likelihood` / `classify` (the same numbers)."""
    check_method(method)
    _check_counts(batch_size=batch_size, probes=probes, levels=levels)
    _check_seed(seed)
    if not tol > 0:
        raise DDIBError(f"tol must be positive, got {tol!r}")
    many = [_model(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    names = [m.name for m in many]
    if not many or len(set(names)) < len(names):
        raise DDIBError(f"give one or more models of distinct names, got {names}")
    if any(m.is_points for m in many):
        raise DDIBError("likelihoods here take images; point domains are not scored")
    if len({tuple(m.data_shape) for m in many}) > 1:
        shapes = ", ".join(f"{m.name} {tuple(m.data_shape)}" for m in many)
        raise DDIBError(f"the models take different data ({shapes}); likelihoods compare models of one data shape")
    u8 = _as_uint8(many[0], images, resize)
    device = next(many[0].diffusion.parameters()).device
    diffusions = {m.name: m.diffusion for m in many}

    def on_batch(done: int, batches: list[list[DomainScore]]) -> None:
        if progress is not None:
            nfe = sum(score.nfe for b in batches for score in b)
            progress(Progress(done, len(u8), nfe, sum(score.nfe for score in batches[-1]), None))

    scores = score_batched(diffusions, u8, batch_size, on_batch, probes=probes, rtol=tol, atol=tol, seed=seed,
                           device=device, method=method, levels=levels)  # fmt: skip
    return {score.domain: score for score in scores}


def _as_uint8(model: DomainModel, images, resize: str) -> torch.Tensor:
    """8-bit images (N, C, H, W) of the model's size: likelihoods are those of the discrete data."""
    x, _ = _as_model_input(model, images, resize)
    return to_uint8(x)  # exact for PIL input, whose pixels x = k/127.5 − 1 round back to k


def _options(solve: dict[str, Any]) -> ode.ODEOptions:
    unknown = sorted(set(solve) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown solve option(s) {', '.join(unknown)}; use {', '.join(sorted(_OPTION_NAMES))}")
    return ode.ODEOptions(**solve)


def _model(model: Model | Diffusion, device: torch.device | str = "cpu") -> DomainModel:
    if isinstance(model, DomainModel):
        return model
    if isinstance(model, Diffusion):
        raise DDIBError("pass a domain model from ddib.load (it knows its domain's data), not a bare Diffusion")
    return load(model, device)


def _as_model_input(model: DomainModel, images, resize: str) -> tuple[torch.Tensor, bool]:
    """(x in model space on the CPU, whether the input was PIL images)."""
    if model.is_points:
        return model.to_model(images.detach().cpu().numpy() if torch.is_tensor(images) else images), False
    if isinstance(images, Image.Image):
        raise DDIBError("pass a list of PIL images, not a single image")
    if isinstance(images, Sequence) and images and all(isinstance(i, Image.Image) for i in images):
        check_resize(resize)
        size, channels = model.data_shape[-1], model.data_shape[0]
        return to_unit_range(torch.stack([convert_image(i, size, channels, resize) for i in images])), True
    if not torch.is_tensor(images) or images.ndim != 4 or not images.is_floating_point():
        raise DDIBError("images must be a float tensor (N, C, H, W) in [-1, 1] or a list of PIL images")
    if tuple(images.shape[1:]) != tuple(model.data_shape):
        raise DDIBError(f"images of shape {tuple(images.shape[1:])} do not fit the {model.name} model's "
                        f"{tuple(model.data_shape)}; pass PIL images to have them resized")  # fmt: skip
    if len(images) == 0:
        raise DDIBError("no images given (the tensor holds 0)")
    _check_range(images)
    return images.detach().cpu().float(), False


def _check_range(images: torch.Tensor) -> None:
    """Images on 0–255 would be solved without complaint and come back as noise. Only that scale is refused: a
    decode's own output (signed, and far outside [-1, 1] from a rough model or a coarse solve) is valid input."""
    finite = images[torch.isfinite(images)]
    if finite.numel() and finite.min().item() >= 0 and finite.max().item() > 2:
        raise DDIBError(f"images must lie in [-1, 1]; these lie in [0, {finite.max().item():.4g}], as 0–255 images do "
                        f"(x / 127.5 − 1 maps those; 2x − 1 maps [0, 1])")  # fmt: skip


def _check_counts(**counts: Any) -> None:
    """Counts given are integers ≥ 1 (None: the default): a zero or negative batch size would otherwise slice the
    images into nothing."""
    for name, value in counts.items():
        if value is not None and (not _is_int(value) or value < 1):
            raise DDIBError(f"{name} must be a positive integer, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)  # numpy integers too; True is no count


def _check_seed(seed: Any) -> None:
    if not _is_int(seed):
        raise DDIBError(f"seed must be an integer, got {seed!r}")


def _as_output(model: DomainModel, y: torch.Tensor, pil: bool):
    if model.is_points:
        return model.to_raw(y)
    return [to_pil(img) for img in y] if pil else y


def _fast(model: DomainModel, speed: Speed) -> Diffusion:
    """The model's diffusion with the kernel settings asked for, else its device's default: what the command line
    runs."""
    if speed is None:
        return accelerate_for(model.diffusion, next(model.diffusion.parameters()).device)
    return accelerate(model.diffusion, parse_speed(speed) if isinstance(speed, str) else speed)


def _batch(model: DomainModel, batch_size: int | None) -> int | None:
    """The batch size asked for; point domains solve many points at once, images as fits the device."""
    _check_counts(batch_size=batch_size)
    return batch_size or (DEFAULT_POINT_BATCH if model.is_points else None)
