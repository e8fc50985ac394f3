"""Which data a domain name stands for, and loading its training images."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DDIBError
from ..io.images import ImageBatch, find_images, read_images
from .colored_mnist import DIGIT_DOMAINS, DIGIT_GROUP, colored_mnist
from .points import DESCRIPTIONS, POINT_DOMAINS, make_points

DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DomainSource:
    """Where a domain's data comes from: a colored-MNIST digit, a folder of images, a built-in 2-D point set, or
    a group of image domains that one class-conditional model learns (each member is one label).

    Point domains also record the training set (n points, generator seed) and its standardisation
    x_model = (x − mean) / std (scalars), so raw coordinates can be mapped in and out of the model's space.
    """

    name: str
    kind: str  # "mnist" | "folder" | "points" | "group"
    digit: int | None = None
    path: str | None = None
    n: int | None = None
    seed: int | None = None
    mean: float | None = None
    std: float | None = None
    members: tuple[DomainSource, ...] = ()  # a group's domains, in label order

    @property
    def labels(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def hue_uniform(self) -> bool:
        """Colored-MNIST data: hues uniform at full saturation (exact RGB and hue symmetries)."""
        return self.kind == "mnist" or (self.kind == "group" and all(m.kind == "mnist" for m in self.members))

    def describe(self) -> str:
        if self.kind == "group":
            return f"{len(self.members)} labelled domains: {', '.join(self.labels)}"
        if self.kind == "mnist":
            return f"colored MNIST digit {self.digit}"
        if self.kind == "points":
            return f"2-D points: {DESCRIPTIONS[self.name]}"
        return f"image folder {self.path}"

    def to_dict(self) -> dict:
        if self.kind == "points":
            return {"name": self.name, "kind": self.kind, "n": self.n, "seed": self.seed, "mean": self.mean,
                    "std": self.std}  # fmt: skip
        if self.kind == "group":
            return {"name": self.name, "kind": self.kind, "labels": self.labels,
                    "members": [m.to_dict() for m in self.members]}  # fmt: skip
        return {"name": self.name, "kind": self.kind, "digit": self.digit, "path": self.path}


def data_dir_or_default(data_dir: str | None) -> str:
    """--data-dir, else $DDIB_DATA_DIR, else data/."""
    return data_dir or os.environ.get("DDIB_DATA_DIR") or "data"


def check_domain_name(name: str) -> None:
    if not DOMAIN_NAME.match(name):
        raise DDIBError(f"invalid domain name {name!r}: use letters, digits, '_', '-' and '.'")


def domain_source(name: str, data: str | list[str] | None = None) -> DomainSource:
    """Resolve a domain name (and --data FOLDER, or several --data LABEL=FOLDER for a group) to its source."""
    check_domain_name(name)
    folders = [data] if isinstance(data, str) else list(data or [])
    if any("=" in f for f in folders):
        members = tuple(_labelled_folder(f) for f in folders)
        if len({m.name for m in members}) < len(members):
            raise DDIBError("--data LABEL=FOLDER: every label must be different")
        return DomainSource(name=name, kind="group", members=members)
    if len(folders) > 1:
        raise DDIBError("several --data folders make a conditional model: name each one, --data LABEL=FOLDER")
    if folders:
        return DomainSource(name=name, kind="folder", path=str(Path(folders[0])))
    if name == DIGIT_GROUP:
        return DomainSource(name=name, kind="group", members=tuple(domain_source(d) for d in DIGIT_DOMAINS))
    if name in DIGIT_DOMAINS:
        return DomainSource(name=name, kind="mnist", digit=DIGIT_DOMAINS.index(name))
    if name in POINT_DOMAINS:
        return DomainSource(name=name, kind="points")
    raise DDIBError(
        f"unknown domain {name!r}; built-in domains are {', '.join(DIGIT_DOMAINS)}, {DIGIT_GROUP} (all ten, one "
        f"conditional model) and the 2-D point domains {', '.join(POINT_DOMAINS)} (or pass --data FOLDER to train on "
        "a folder of images)"
    )


def _labelled_folder(spec: str) -> DomainSource:
    label, sep, folder = spec.partition("=")
    if not sep or not label or not folder:
        raise DDIBError(f"--data {spec!r}: a conditional model's domains are given as LABEL=FOLDER, every one")
    check_domain_name(label)
    return DomainSource(name=label, kind="folder", path=str(Path(folder)))


def load_point_domain(source: DomainSource, n: int, seed: int) -> tuple[DomainSource, torch.Tensor]:
    """A point domain's standardised training set (n, 2), and its source with n, seed, mean and std filled in."""
    points, mean, std = make_points(source.name, n, seed)
    return DomainSource(name=source.name, kind="points", n=n, seed=seed, mean=mean, std=std), points


def load_domain_images(
    source: DomainSource, data_dir: str, image_size: int, channels: int, split: str = "train", skip_bad: bool = False
) -> ImageBatch:
    """Training images of a domain as uint8 (N, C, S, S), every file read before training starts."""
    if source.kind == "points":
        raise DDIBError(f"{source.name} is a 2-D point domain, not an image domain")
    if source.kind == "mnist":
        if channels != 3:
            raise DDIBError("colored MNIST domains have 3 channels")
        images, _ = colored_mnist(data_dir, source.digit, split, image_size)
        return ImageBatch(images, [], [])
    files = find_images(source.path)
    if not files:
        raise DDIBError(f"no images found in {source.path} (looked recursively for common image formats)")
    return read_images(files, image_size, channels, skip_bad)


def load_labelled_images(
    source: DomainSource, data_dir: str, image_size: int, channels: int, split: str = "train", skip_bad: bool = False
) -> tuple[ImageBatch, torch.Tensor | None]:
    """A domain's training images, and for a group the label (its member's index) of every image."""
    if source.kind != "group":
        return load_domain_images(source, data_dir, image_size, channels, split, skip_bad), None
    parts = [load_domain_images(m, data_dir, image_size, channels, split, skip_bad) for m in source.members]
    labels = torch.cat([torch.full((len(p.pixels),), i, dtype=torch.long) for i, p in enumerate(parts)])
    merged = ImageBatch(torch.cat([p.pixels for p in parts]), [f for p in parts for f in p.files],
                        [s for p in parts for s in p.skipped])  # fmt: skip
    return merged, labels
