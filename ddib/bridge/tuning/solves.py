"""What every tuning method measures with: the tuning data, a solve through given nodes over many images, and the
converged solves its errors are distances to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...data.inputs import tuning_images
from ...model.diffusion import Diffusion
from .. import ode
from ..batching import in_batches, pixel_batch

# Images per gradient-free solve while tuning, at 32×32 (`solve_batch`).
SOLVE_BATCH = 64


@dataclass(frozen=True)
class TuningData:
    """Images of the domain in [-1, 1] for tuning and for validation, and N(0, I) latents for each."""

    tune_images: torch.Tensor
    val_images: torch.Tensor
    tune_noise: torch.Tensor
    val_noise: torch.Tensor


def tuning_data(domain: str, model: Diffusion, n: int, val: int, files: list[Path] | None = None, seed: int = 0,
                data_dir: str | Path | None = None) -> TuningData:  # fmt: skip
    """n images to tune on and `val` to validate on (`inputs.tuning_images`), on the model's device, with N(0, I)
    latents for each."""
    tune_x, val_x = tuning_images(domain, model, n, val, files, seed, data_dir)
    noise = torch.randn((n + val, *model.data_shape), generator=torch.Generator().manual_seed(seed + 1))
    dev = next(model.parameters()).device
    return TuningData(tune_x.to(dev), val_x.to(dev), noise[:n].to(dev), noise[n:].to(dev))


def solve_batch(*models: Diffusion) -> int:
    """Images per gradient-free solve while tuning: 64 of 32×32, of larger images as many as hold their pixels."""
    return pixel_batch(list(models), SOLVE_BATCH)


def encode_on(model: Diffusion, x: torch.Tensor, options: ode.ODEOptions, grid: torch.Tensor | None = None,
              corrections: list[list[float]] | None = None, batch_size: int | None = None) -> torch.Tensor:  # fmt: skip
    """Latents of images x by the solve `options`, in batches; with `grid` (increasing σ̄), a fixed-step solve
    through those nodes with per-step `corrections`."""
    encode = lambda c: ode.encode(model, c, options, grid=grid, corrections=corrections)  # noqa: E731
    return in_batches(encode, x, batch_size or solve_batch(model)).to(x.device)


def decode_on(model: Diffusion, z: torch.Tensor, options: ode.ODEOptions, grid: torch.Tensor | None = None,
              corrections: list[list[float]] | None = None, batch_size: int | None = None) -> torch.Tensor:  # fmt: skip
    """Images of latents z by the solve `options`, in batches; with `grid` (given increasing), a fixed-step solve
    back through those nodes with per-step `corrections` (in solve order)."""
    decode = lambda c: ode.decode(model, c, options, grid=grid, corrections=corrections)  # noqa: E731
    return in_batches(decode, z, batch_size or solve_batch(model)).to(z.device)


@torch.no_grad()
def converged_solves(model: Diffusion, encoder: Diffusion, data: TuningData, ref: ode.ODEOptions, decode: bool):
    """Keyed by validation (False/True): the encoder's converged latents of the images, those latents with the
    N(0, I) draws appended, and (with `decode`) the model's converged decodes of the latter."""
    images = {False: data.tune_images, True: data.val_images}
    ref_latents = {v: encode_on(encoder, x, ref) for v, x in images.items()}
    latents = {v: torch.cat([ref_latents[v], n]) for v, n in ((False, data.tune_noise), (True, data.val_noise))}
    ref_images = {v: decode_on(model, z, ref) for v, z in latents.items()} if decode else {}
    return ref_latents, latents, ref_images


def untuned(options: ode.ODEOptions) -> ode.ODEOptions:
    """The options' solve on its untuned grid."""
    return ode.ODEOptions(options.solver, options.steps, rho=options.rho, tuned=False)


def converged(reference: ode.ODEOptions) -> ode.ODEOptions:
    """The reference solve, never on a tuned grid."""
    r = reference
    return ode.ODEOptions(r.solver, r.steps, r.rtol, r.atol, r.rho, tuned=False)
