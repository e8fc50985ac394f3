"""Scatter plots of 2-D points with PIL (no matplotlib): sample plots and the source → latent → target figure.

Colour map of the transport figure: every point keeps the colour of its *source* position in all three
panels, so the panels show where the bridge sends each region. Hue is the angle around the source points'
mean (a full turn of the colour wheel), brightness rises with the distance from that mean (by rank, from
40% at the centre to 100% on the outside), so both the angular and the radial order of the source are visible.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
SAMPLE_COLOR = (31, 119, 180)
_ASCII = {"×": "x", "→": "->", "²": "^2", "≈": "~"}


def _font(size: int = 13):
    try:  # Pillow ≥ 10.1 with FreeType: a scalable default font
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError, ImportError):
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, xy, text: str, fill, size: int = 13) -> None:
    """Text in the default font, with the few non-ASCII symbols ddib prints spelled in ASCII."""
    for k, v in _ASCII.items():
        text = text.replace(k, v)
    draw.text(xy, text, fill=fill, font=_font(size))


def _numpy(points) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().double().numpy()
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def position_colors(points) -> np.ndarray:
    """(N, 3) uint8 colours from positions: hue = angle around the mean, brightness = radius rank."""
    x = _numpy(points)
    d = x - x.mean(axis=0)
    hue = (np.arctan2(d[:, 1], d[:, 0]) / (2 * np.pi)) % 1.0
    radius = np.hypot(d[:, 0], d[:, 1])
    rank = np.argsort(np.argsort(radius)) / max(1, len(x) - 1)
    return (hsv_to_rgb(hue, np.ones_like(hue), 0.4 + 0.6 * rank) * 255).round().astype(np.uint8)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised colorsys.hsv_to_rgb: (N,) arrays in [0, 1] → (N, 3) floats in [0, 1]."""
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=1)


def window(*point_sets, pad: float = 0.06, quantile: float = 0.002) -> tuple[float, float, float]:
    """A square view (centre x, centre y, half-width) covering all sets (their 0.2%–99.8% quantiles)."""
    xs = np.concatenate([_numpy(p) for p in point_sets])
    lo = np.quantile(xs, quantile, axis=0) if len(xs) > 100 else xs.min(axis=0)
    hi = np.quantile(xs, 1 - quantile, axis=0) if len(xs) > 100 else xs.max(axis=0)
    cx, cy = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2, 1e-6) * (1 + pad)
    return float(cx), float(cy), half


def centred_window(*point_sets, pad: float = 0.08, quantile: float = 0.998, least: float = 2.5, most: float = 4.5):
    """A square view centred at the origin for standardised spaces: the sets' |x|, |y| quantile, clipped to
    [least, most] (a standard normal latent stays within ±4.5 but for one point in 150,000)."""
    xs = np.abs(np.concatenate([_numpy(p) for p in point_sets]))
    q = float(np.quantile(xs, quantile)) if len(xs) > 100 else float(xs.max())
    return 0.0, 0.0, min(most, max(least, q)) * (1 + pad)


def _dot_offsets(n: int) -> list[tuple[int, int]]:
    radius = 2 if n <= 1_500 else 1 if n <= 40_000 else 0
    return [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)
            if dx * dx + dy * dy <= radius * radius + 1]  # fmt: skip


def render(points, colors: np.ndarray | tuple[int, int, int], size: int, view: tuple[float, float, float]):
    """An RGB image (size × size) of the points, drawn in order (later points on top); off-view points dropped."""
    x = _numpy(points)
    cx, cy, half = view
    arr = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    u = np.round((x[:, 0] - (cx - half)) / (2 * half) * (size - 1)).astype(np.int64)
    v = np.round(((cy + half) - x[:, 1]) / (2 * half) * (size - 1)).astype(np.int64)
    cols = np.broadcast_to(np.asarray(colors, dtype=np.uint8), (len(x), 3))
    for dx, dy in _dot_offsets(len(x)):
        uu, vv = u + dx, v + dy
        keep = (uu >= 0) & (uu < size) & (vv >= 0) & (vv < size)
        arr[vv[keep], uu[keep]] = cols[keep]
    return Image.fromarray(arr)


def _panel(points, colors, size: int, view, title: str, footer: str | None = None) -> Image.Image:
    top, bottom, side = 24, 20, 6
    img = Image.new("RGB", (size + 2 * side, size + top + bottom), BACKGROUND)
    img.paste(render(points, colors, size, view), (side, top))
    draw = ImageDraw.Draw(img)
    draw.rectangle([side - 1, top - 1, side + size, top + size], outline=(160, 160, 160))
    _text(draw, (side, 5), title, (0, 0, 0))
    cx, cy, half = view
    extent = footer or f"x {cx - half:.2f}..{cx + half:.2f}, y {cy - half:.2f}..{cy + half:.2f}"
    _text(draw, (side, top + size + 4), extent, (110, 110, 110), size=11)
    return img


def scatter_image(points, title: str = "", size: int = 480, colors=SAMPLE_COLOR) -> Image.Image:
    """One scatter panel with equal axes fitted to the points (titled, with its extent written below)."""
    return _panel(points, colors, size, window(points), title)


def transport_figure(
    source, latent, translated, titles: tuple[str, str, str], caption: str = "", size: int = 400
) -> Image.Image:
    """Three panels — source points, their latents, their translations — coloured by source position.

    All panels share one square view centred at the origin (the inputs are standardised spaces).
    """
    colors = position_colors(source)
    view = centred_window(source, latent, translated)
    panels = [_panel(p, colors, size, view, t) for p, t in zip((source, latent, translated), titles, strict=True)]
    w, h = panels[0].size
    foot = 22 if caption else 0
    fig = Image.new("RGB", (w * 3, h + foot), BACKGROUND)
    for i, p in enumerate(panels):
        fig.paste(p, (i * w, 0))
    if caption:
        _text(ImageDraw.Draw(fig), (6, h + 2), caption, (0, 0, 0))
    return fig
