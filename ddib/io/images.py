"""Image files in and out, with one documented conversion policy for every input.

Input policy (`load_image`): EXIF orientation applied; 16-bit and 32-bit integer greyscale scaled to
8 bits (÷257 for 16-bit data); palette images expanded; any alpha channel composited over black (the
background of the colored-MNIST domains); then converted to RGB (3-channel models) or luminance L
(1-channel models); an image of another size than the model's resized with bicubic antialiasing: by default
("crop") its shorter side to the model's size and the centre cropped to a square, or ("stretch") both sides to the
model's size. Pixels map to [-1, 1] by x/127.5 − 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DDIBError
from .atomic import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def _to_8bit(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        # Mode "I" holds 16-bit PNGs too; anything above 255 means 16-bit data.
        scale = 257.0 if (img.mode.startswith("I;16") or arr.max(initial=0) > 255) else 1.0
        return Image.fromarray(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), mode="L")
    if img.mode == "1":
        return img.convert("L")
    return img


def _flatten_alpha(img: Image.Image) -> Image.Image:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return img


RESIZE_MODES = ("crop", "stretch")


def check_resize(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise DDIBError(f"unknown --resize {mode!r}; use one of {', '.join(RESIZE_MODES)}")


def convert_image(img: Image.Image, size: int, channels: int, resize: str = "crop") -> torch.Tensor:
    """Apply the input policy: (channels, size, size) uint8."""
    img = ImageOps.exif_transpose(img)
    img = _flatten_alpha(_to_8bit(img))
    img = img.convert("RGB" if channels == 3 else "L")
    w, h = img.size
    if resize == "stretch" and (w, h) != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
        w, h = size, size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


READ_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# Unreadable files named in one error before the rest are counted ("and 12 more").
NAMED_UNREADABLE = 10


def load_image(path: str | Path, size: int, channels: int) -> torch.Tensor:
    """Read one image file under the input policy: (channels, size, size) uint8."""
    try:
        return _decode(path, size, channels)[0]
    except FileNotFoundError:
        raise DDIBError(f"image not found: {path}") from None
    except READ_ERRORS as exc:
        raise DDIBError(f"cannot read image {path}: {unreadable_reason(exc)}") from None


def _decode(path: str | Path, size: int, channels: int, resize: str = "crop") -> tuple[torch.Tensor, bool]:
    """(pixels, whether the file's size differed from the model's)."""
    with Image.open(path) as img:
        img.load()  # decodes every pixel: a truncated file fails here, not half-way through a batch later
        return convert_image(img, size, channels, resize), img.size != (size, size)


def unreadable_reason(exc: BaseException) -> str:
    """A short reason for an unreadable image (PIL's messages repeat the path)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    text = str(exc).split("\n")[0]
    if "truncated" in text:
        return "truncated"
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else text)[:80] or type(exc).__name__


@dataclass(frozen=True)
class ImageBatch:
    """Images read under the input policy, the files they came from, and the (file, reason) pairs skipped."""

    pixels: torch.Tensor  # (N, C, S, S) uint8
    files: list[Path]
    skipped: list[tuple[Path, str]]
    resized: int = 0  # how many were of another size than the model's
    resize: str = "crop"

    def describe_resize(self) -> str:
        """For summaries: ', 3 of 4 resized to 256×256 (centre crop)' ('' when none was)."""
        if not self.resized:
            return ""
        how = "centre crop" if self.resize == "crop" else "stretched"
        size = self.pixels.shape[-1]
        return f", {self.resized} of {len(self.files)} resized to {size}×{size} ({how})"


def read_images(files: list[Path], size: int, channels: int, skip_bad: bool = False,
                resize: str = "crop") -> ImageBatch:  # fmt: skip
    """Decode every file before any work starts (ImageMagick/rsync policy: report all bad files at once).

    Unreadable files raise one DDIBError naming all of them (count, then up to NAMED_UNREADABLE names) unless
    `skip_bad`, which keeps the readable ones and lists the rest in `skipped`.
    """
    check_resize(resize)
    pixels, kept, bad, resized = [], [], [], 0
    for f in files:
        try:
            image, changed = _decode(f, size, channels, resize)
            pixels.append(image)
            resized += changed
            kept.append(Path(f))
        except READ_ERRORS as exc:
            bad.append((Path(f), unreadable_reason(exc)))
    if bad and not skip_bad:
        raise DDIBError(f"{describe_unreadable(bad, len(files))}; nothing was written (fix or remove them, or pass "
                        "--skip-bad to go on without them)")  # fmt: skip
    if not pixels:
        raise DDIBError(f"{describe_unreadable(bad, len(files))}: no image left to work on")
    return ImageBatch(torch.stack(pixels), kept, bad, resized, resize)


def describe_unreadable(bad: list[tuple[Path, str]], total: int) -> str:
    """'3 of 120 images cannot be read: a.png (truncated), b.png (…), …, and 2 more'."""
    named = ", ".join(f"{p} ({reason})" for p, reason in bad[:NAMED_UNREADABLE])
    more = f", and {len(bad) - NAMED_UNREADABLE} more" if len(bad) > NAMED_UNREADABLE else ""
    return f"{len(bad)} of {total} images cannot be read: {named}{more}"


def find_images(folder: str | Path) -> list[Path]:
    """Image files under a folder, recursively, in sorted order."""
    folder = Path(folder)
    if not folder.exists():
        raise DDIBError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise DDIBError(f"not a folder: {folder}")
    try:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    except PermissionError as exc:
        raise DDIBError(f"cannot read folder {folder}: {exc.strerror}") from None
    return files


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given and the images inside folders, without duplicates, in order."""
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = find_images(p)
            if not found:
                raise DDIBError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {p}")
        elif p.exists():
            found = [p]
        else:
            raise DDIBError(f"input not found: {p}")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def to_unit_range(u8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float in [-1, 1]."""
    return u8.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float in [-1, 1] → uint8 pixels (clamped, rounded)."""
    return x.detach().float().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu()


def to_pil(x: torch.Tensor) -> Image.Image:
    """(C, H, W) in [-1, 1] → PIL image."""
    arr = to_uint8(x).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB")


def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[a0, b0, a1, b1, …]: pairs side by side in a grid."""
    return torch.stack([a, b], dim=1).flatten(0, 1)


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> Image.Image:
    """A grid of (B, C, H, W) images in [-1, 1] as one PIL image: torchvision's `make_grid` layout (rows of `nrow`,
    `padding` white pixels around each; one image alone unpadded), without importing torchvision."""
    x = images.detach().float().cpu().clamp(-1, 1)
    if len(x) == 1:
        return to_pil(x[0])
    n, c, h, w = x.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = x.new_ones(c, rows * (h + padding) + padding, cols * (w + padding) + padding)
    for k, img in enumerate(x):
        top, left = (k // cols) * (h + padding) + padding, (k % cols) * (w + padding) + padding
        grid[:, top : top + h, left : left + w] = img
    return to_pil(grid)


def save_png(img: Image.Image, path: str | Path) -> None:
    """Write a PNG atomically: never leaves a truncated file, never replaces a file mid-write."""
    path = Path(path)
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def labelled_grid(rows: list[tuple[str, torch.Tensor]], scale: int = 2, label_width: int = 110) -> Image.Image:
    """Rows of (label, (B, C, H, W) images in [-1, 1]) as one sheet, each row labelled on its left."""
    from PIL import ImageDraw

    row_images = [image_grid(x, nrow=len(x), padding=2) for _, x in rows]
    row_images = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in row_images]
    width = label_width + max(im.width for im in row_images)
    height = sum(im.height for im in row_images)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for (label, _), im in zip(rows, row_images, strict=True):
        sheet.paste(im.convert("RGB"), (label_width, y))
        draw.multiline_text((4, y + im.height // 2 - 6), label, fill=(0, 0, 0))
        y += im.height
    return sheet
