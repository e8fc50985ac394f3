"""Evaluation digit classifier: reads the digit of a colored-MNIST image, whatever its hue.

Colour invariance holds by construction: the network sees only the value channel V = max(R, G, B) of
the image, and a colored-MNIST digit's value channel is its grey digit. The classifier is trained on
the MNIST train split (grey digits resized to 32×32 exactly as the colored-MNIST domains are, with a
small random affine augmentation), scored on the MNIST test split, and bundled as `config.json` +
`model.safetensors` under `ddib/assets/classifier/`. Its 128-d penultimate features serve for Fréchet
distances between sets of images.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DDIBError
from ..io import artifacts
from ..io.artifacts import CONFIG_FILE, WEIGHTS_FILE
from ..io.images import to_unit_range

BUNDLED_DIR = Path(__file__).parents[1] / "assets" / "classifier"
FORMAT = "ddib-classifier"
FORMAT_VERSION = 1

# Augmentation ranges: small enough to keep every digit legible, wide enough for imperfect samples.
MAX_ROTATION_DEG = 10.0
MAX_TRANSLATE_PX = 2.0
SCALE_RANGE = (0.9, 1.1)


@dataclass(frozen=True)
class ClassifierConfig:
    """Shape of the network: input size, conv width (doubled after the first pool), feature size."""

    image_size: int = 32
    width: int = 32
    feature_dim: int = 128
    dropout: float = 0.3
    num_classes: int = 10


@dataclass(frozen=True)
class EpochStats:
    """Progress report of one training epoch."""

    epoch: int
    epochs: int
    loss: float
    train_accuracy: float
    seconds: float


def value_channel(images: torch.Tensor) -> torch.Tensor:
    """Value channel V = max(R, G, B) of (B, 3, H, W) images as (B, 1, H, W); 1-channel images pass as is."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DDIBError(f"expected images of shape (B, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] == 1:
        return images
    return images.amax(dim=1, keepdim=True)


def _conv(cin: int, cout: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitClassifier(nn.Module):
    """CNN on the value channel: conv w-w-pool-2w-2w-pool, 4×4 average pool, 128-d features, 10 logits."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = cfg = config or ClassifierConfig()
        self.metadata: dict[str, Any] = {}  # what load_classifier read from config.json
        if cfg.image_size < 16:
            raise DDIBError(f"classifier image_size must be at least 16, got {cfg.image_size}")
        w = cfg.width
        self.body = nn.Sequential(
            _conv(1, w),
            _conv(w, w),
            nn.MaxPool2d(2),
            _conv(w, 2 * w),
            _conv(2 * w, 2 * w),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Linear(2 * w * 16, cfg.feature_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        x = value_channel(images)
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            raise DDIBError(f"the classifier reads {size}×{size} images, got {x.shape[-2]}×{x.shape[-1]}")
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim) of (B, 1 or 3, S, S) images in [-1, 1]."""
        x = self.body(self._check(images))
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of (B, 1 or 3, S, S) images in [-1, 1]."""
        return self.head(self.dropout(self.features(images)))


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def grey_mnist(data_dir: str, split: str, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey MNIST digits resized as the colored-MNIST domains are: (uint8 (N, 1, S, S), labels (N,))."""
    from ..data.colored_mnist import load_mnist, resize_digits

    images, labels = load_mnist(data_dir, split)
    out = torch.empty((len(images), 1, image_size, image_size), dtype=torch.uint8)
    for start in range(0, len(images), 4096):  # chunks bound the float32 working memory
        grey = resize_digits(images[start : start + 4096], image_size)
        out[start : start + 4096] = grey.mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return out, labels


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of (B, C, S, S) in [-1, 1] rotated ±10°, scaled 0.9–1.1, shifted ±2 px; black fill."""
    b, size = images.shape[0], images.shape[-1]
    angle = torch.deg2rad((torch.rand(b, generator=generator) * 2 - 1) * MAX_ROTATION_DEG)
    lo, hi = SCALE_RANGE
    scale = lo + torch.rand(b, generator=generator) * (hi - lo)
    # Shift in normalised coordinates, where the image spans [-1, 1]: one pixel is 2 / size.
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * MAX_TRANSLATE_PX * 2.0 / size
    # affine_grid maps output coordinates to input ones: the inverse of x ↦ s·R(a)·x + t.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # R(−a)/s
    offset = -(inv @ shift[:, :, None])
    theta = torch.cat([inv, offset], dim=2).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    unit = (images + 1) / 2  # zero padding = black background
    out = F.grid_sample(unit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out * 2 - 1


def train_classifier(
    data_dir: str,
    epochs: int = 5,
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str = "cpu",
    lr: float = 2e-3,
    callback: Callable[[EpochStats], None] | None = None,
    config: ClassifierConfig | None = None,
) -> DigitClassifier:
    """A DigitClassifier trained on the MNIST train split (Adam, cosine decay), in eval mode on `device`."""
    if epochs < 1 or batch_size < 1:
        raise DDIBError("epochs and batch size must be at least 1")
    cfg = config or ClassifierConfig()
    device = torch.device(device)
    images, labels = grey_mnist(data_dir, "train", cfg.image_size)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitClassifier(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / (epochs * steps_per_epoch), 1.0)))
    )
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        total_loss, correct = 0.0, 0
        order = torch.randperm(len(images), generator=gen)
        for first in range(0, len(images), batch_size):
            idx = order[first : first + batch_size]
            x = random_affine(to_unit_range(images[idx]), gen).to(device)
            y = labels[idx].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
        if callback is not None:
            callback(
                EpochStats(
                    epoch=epoch,
                    epochs=epochs,
                    loss=total_loss / len(images),
                    train_accuracy=correct / len(images),
                    seconds=time.perf_counter() - start,
                )
            )
    model.eval()
    model.requires_grad_(False)
    return model


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(model: nn.Module, images: torch.Tensor, batch_size: int, fn) -> torch.Tensor:
    if batch_size < 1:
        raise DDIBError("batch size must be at least 1")
    device = _model_device(model)
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            x = to_unit_range(x) if x.dtype == torch.uint8 else x.float()
            outs.append(fn(x.to(device)).float().cpu())
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def predict(model: DigitClassifier, images: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (B,), class probabilities (B, 10)) of images in [-1, 1] (uint8 pixels mapped there first)."""
    logits = _batches(model, images, batch_size, model)
    if logits.numel() == 0:
        return torch.empty(0, dtype=torch.long), torch.empty(0, model.config.num_classes)
    probs = logits.softmax(dim=1)
    return probs.argmax(dim=1), probs


def extract_features(model: DigitClassifier, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features (B, 128) of images in [-1, 1] (uint8 pixels are mapped there first)."""
    feats = _batches(model, images, batch_size, model.features)
    return feats if feats.numel() else torch.empty(0, model.config.feature_dim)


def test_accuracy(model: DigitClassifier, data_dir: str) -> float:
    """Fraction of the MNIST test split (grey, resized to the model's size) classified correctly."""
    images, labels = grey_mnist(data_dir, "test", model.config.image_size)
    predicted, _ = predict(model, images)
    return (predicted == labels).float().mean().item()


test_accuracy.__test__ = False  # not a pytest test, despite its name


def save_classifier(model: DigitClassifier, dirpath: str | Path, metadata: dict[str, Any]) -> None:
    """Write `model.safetensors` (float32 weights) then `config.json` (config + metadata), each atomically."""
    dirpath = Path(dirpath)
    tensors = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}  # a counter
    artifacts.save_weights(dirpath, tensors, {"format": FORMAT}, torch.float32)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": dataclasses.asdict(model.config),
        "metadata": {"torch": torch.__version__, **metadata},
    }
    artifacts.write_json(dirpath / CONFIG_FILE, payload)


def read_classifier_config(dirpath: str | Path) -> tuple[ClassifierConfig, dict[str, Any]]:
    """(ClassifierConfig, metadata) from a classifier folder's config.json."""
    path = Path(dirpath) / CONFIG_FILE
    raw = artifacts.read_config(dirpath, FORMAT, FORMAT_VERSION, "classifier")
    try:
        return ClassifierConfig(**raw["config"]), dict(raw.get("metadata") or {})
    except (KeyError, TypeError) as exc:
        raise DDIBError(f"{path} is incompatible with this ddib: {exc}") from None


def load_classifier(dirpath: str | Path | None = None, device: torch.device | str = "cpu") -> DigitClassifier:
    """The classifier saved in `dirpath` (default: the bundled one), float32, in eval mode on `device`."""
    dirpath = Path(dirpath) if dirpath is not None else BUNDLED_DIR
    cfg, metadata = read_classifier_config(dirpath)
    tensors, _ = artifacts.load_weights(dirpath, "classifier")
    model = DigitClassifier(cfg)
    mismatch = DDIBError(f"{dirpath / WEIGHTS_FILE} does not match the classifier described in {dirpath / CONFIG_FILE}")
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError:  # shape mismatch
        raise mismatch from None
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise mismatch
    model.metadata = metadata
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model
