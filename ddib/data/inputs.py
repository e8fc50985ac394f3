"""Where a command's source images come from: the files given, else held-out digits of a digit domain, else (where
the command allows it) samples of the source model — one rule for perturb, tune-solver, bench and evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DDIBError
from ..io.images import ImageBatch, expand_inputs, read_images, to_unit_range
from ..model.diffusion import Diffusion
from . import data_dir_or_default
from .colored_mnist import DIGIT_DOMAINS, colored_mnist


@dataclass(frozen=True)
class SourceImages:
    """Images (N, C, H, W) in [-1, 1] on the CPU, what they are in words, and the files read (when files were
    given: their names, skipped and resized ones)."""

    x: torch.Tensor
    about: str
    files: ImageBatch | None = None


def read_inputs(inputs: list[Path], size: int, channels: int, skip_bad: bool = False, limit: int | None = None,
                resize: str = "crop") -> ImageBatch:  # fmt: skip
    """Every input image (files and folders' contents, the first `limit`), decoded before any work starts."""
    return read_images(expand_inputs(inputs)[:limit], size, channels, skip_bad, resize)


def mnist_available(data_dir: str | Path) -> bool:
    """Whether MNIST's test split is in data_dir/MNIST/raw (what held-out inputs need)."""
    raw = Path(data_dir) / "MNIST" / "raw"
    return (raw / "t10k-images-idx3-ubyte").is_file() and (raw / "t10k-labels-idx1-ubyte").is_file()


def held_out_digits(data_dir: str | Path, domain: str, n: int, seed: int = 0, image_size: int = 32,
                    split: str = "test") -> torch.Tensor:  # fmt: skip
    """A fixed, seeded set of n MNIST images of a digit domain (the *test* split unless told), coloured, in [-1, 1]."""
    images, _ = colored_mnist(str(data_dir), DIGIT_DOMAINS.index(domain), split, image_size)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return to_unit_range(images[order])


def source_images(domain: str, model: Diffusion, n: int | None, *, files: list[Path] | None = None, seed: int = 0,
                  data_dir: str | Path | None = None, split: str = "test", last: bool = False,
                  samples: bool = False, sample_options=None, skip_bad: bool = False,
                  resize: str = "crop") -> SourceImages:  # fmt: skip
    """The images a command works on: `files` (the first n; all when n is None), else n digits of the domain's MNIST
    `split` in a seeded order (the last n of it with `last`), else, with `samples`, n samples of `model` from seeded
    noise (solved with `sample_options`, an `ode.ODEOptions`); otherwise a one-line error asking for files. Files of
    another size than the model's are resized by `resize` (`io.images.convert_image`)."""
    channels, size = model.data_shape[0], model.data_shape[-1]
    if files:
        images = read_inputs(files, size, channels, skip_bad, limit=n, resize=resize)
        about = f"{len(images.files)} input images{images.describe_resize()}"
        return SourceImages(to_unit_range(images.pixels), about, images)
    if n is None:
        raise DDIBError("give the number of images (-n) or image files")
    digits = domain in DIGIT_DOMAINS and channels == 3
    data_dir = data_dir_or_default(data_dir)
    if digits and (mnist_available(data_dir) or not samples):
        if last:
            x = held_out_digits(data_dir, domain, 1_000_000, seed, size, split)[-n:]
        else:
            x = held_out_digits(data_dir, domain, n, seed, size, split)
        kind = "held-out" if split == "test" else f"{split}-split"
        return SourceImages(x, f"{len(x)} {kind} {domain} (MNIST {split} split, seed {seed})")
    if not samples:
        raise DDIBError(f"{domain} is not a digit domain: give images of it with --inputs")
    from ..bridge import ode, pipeline  # the bridge sits above the data layer

    options = sample_options or ode.ODEOptions()
    latent = ode.sample_latent(model, n, torch.Generator().manual_seed(seed))
    (x,) = pipeline.collect(pipeline.decode_batches(model, latent, options))  # in batches that fit the device
    why = f"no MNIST in {data_dir}" if digits else "not a digit domain"
    return SourceImages(x, f"{n} {domain} sampled from the {domain} model (seed {seed}; {why})")


def tuning_images(domain: str, model: Diffusion, n: int, val: int, files: list[Path] | None = None, seed: int = 0,
                  data_dir: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(n images to tune a solver on, `val` others to validate on): the first n + val files, else n digits of the
    training split and the last `val` of the held-out split (`ddib bench translate` measures on its first)."""
    if files:
        x = source_images(domain, model, n + val, files=files).x
        if len(x) < n + val:
            raise DDIBError(f"--inputs holds {len(x)} images; -n {n} + --val {val} are needed")
        return x[:n], x[n:]
    tune = source_images(domain, model, n, seed=seed, data_dir=data_dir, split="train").x
    return tune, source_images(domain, model, val, seed=seed, data_dir=data_dir, last=True).x
