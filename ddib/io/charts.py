"""Minimal PIL plots (matplotlib is not a dependency): line charts on log or linear axes."""

from __future__ import annotations

import math

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # fmt: skip


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def _linear_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round ticks (1, 2 or 5 × 10^k apart) covering [lo, hi]."""
    span = (hi - lo) or abs(hi) or 1.0
    raw = span / count
    step = min((m * 10.0 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda d: abs(d - raw))
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [k * step for k in range(first, max(last, first + 1) + 1)]


def loglog_chart(series, title, xlabel, ylabel, size=(720, 480), hline=None) -> Image.Image:
    """One polyline with markers per series on log10 axes; non-positive values are dropped."""
    return line_chart(series, title, xlabel, ylabel, size, hline, xlog=True, ylog=True)


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    size: tuple[int, int] = (720, 480),
    hline: tuple[float, str] | None = None,
    xlog: bool = True,
    ylog: bool = True,
    markers: bool = True,
    intervals: dict[str, list[tuple[float, float, float]]] | None = None,
    band: tuple[float, float, str] | None = None,
) -> Image.Image:
    """One polyline (with markers) per series; on a log axis non-positive values are dropped. `intervals` gives a
    series vertical bars (x, low, high), `band` a shaded horizontal band (low, high, label) across the plot."""
    intervals = intervals or {}
    w, h = size
    left, right, top, bottom = 70, 150, 40, 50
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def valid(x: float, y: float) -> bool:
        return math.isfinite(x) and math.isfinite(y) and (x > 0 or not xlog) and (y > 0 or not ylog)

    pts = [(x, y) for s in series.values() for x, y in s if valid(x, y)]
    pts += [(x, y) for bars in intervals.values() for x, lo, hi in bars for y in (lo, hi) if valid(x, y)]
    if hline:
        pts.append((pts[0][0] if pts else 1.0, hline[0]))
    if band:
        pts += [(pts[0][0] if pts else 1.0, y) for y in band[:2] if valid(1.0, y)]
    if not pts:
        draw.text((left, top), "no data", fill=(0, 0, 0))
        return img
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    fx, fy = (math.log10 if xlog else float), (math.log10 if ylog else float)
    xt = _log_ticks(min(xs), max(xs)) if xlog else _linear_ticks(min(xs), max(xs))
    yt = _log_ticks(min(ys), max(ys)) if ylog else _linear_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = fx(xt[0]), fx(xt[-1]), fy(yt[0]), fy(yt[-1])
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        u = left + (fx(x) - x0) / (x1 - x0) * (w - left - right)
        v = h - bottom - (fy(y) - y0) / (y1 - y0) * (h - top - bottom)
        return u, v

    if band:
        (_, v_lo), (_, v_hi) = px(xt[0], band[0]), px(xt[0], band[1])
        draw.rectangle([left, min(v_lo, v_hi) - 1, w - right, max(v_lo, v_hi) + 1], fill=(222, 222, 222))
        draw.text((w - right + 5, min(v_lo, v_hi) - 6), band[2], fill=(110, 110, 110))
    draw.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for t in xt:
        u, _ = px(t, yt[0])
        draw.line([u, top, u, h - bottom], fill=(225, 225, 225))
        draw.text((u - 10, h - bottom + 5), f"{t:g}", fill=(0, 0, 0))
    for t in yt:
        _, v = px(xt[0], t)
        draw.line([left, v, w - right, v], fill=(225, 225, 225))
        draw.text((5, v - 6), f"{t:g}", fill=(0, 0, 0))
    if hline:
        _, v = px(xt[0], hline[0])
        draw.line([left, v, w - right, v], fill=(200, 0, 0))
        draw.text((w - right + 5, v - 6), hline[1], fill=(200, 0, 0))
    for i, (name, s) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        # Past the palette's length colours repeat: the repeats get square markers and a thin line.
        square = (i // len(PALETTE)) % 2 == 1
        mark = draw.rectangle if square else draw.ellipse
        line = [px(x, y) for x, y in sorted(s) if valid(x, y)]
        if len(line) > 1:
            draw.line(line, fill=color, width=1 if square else 2)
        for u, v in line if markers else ():
            mark([u - 3, v - 3, u + 3, v + 3], fill=color)
        for x, lo, hi in intervals.get(name, []):
            if valid(x, lo) and valid(x, hi):
                (u, v_lo), (_, v_hi) = px(x, lo), px(x, hi)
                draw.line([u, v_lo, u, v_hi], fill=color, width=1)
                draw.line([u - 3, v_lo, u + 3, v_lo], fill=color)
                draw.line([u - 3, v_hi, u + 3, v_hi], fill=color)
        mark([w - right + 4, top + 15 * i + 23, w - right + 10, top + 15 * i + 29], fill=color)
        draw.text((w - right + 14, top + 15 * i + 20), name, fill=color)
    draw.text((left, 10), title, fill=(0, 0, 0))
    draw.text(((w - right + left) // 2 - 40, h - 20), xlabel, fill=(0, 0, 0))
    draw.text((5, top - 25), ylabel, fill=(0, 0, 0))
    return img


def tile(charts: list[Image.Image], columns: int, title: str = "") -> Image.Image:
    """Charts side by side, `columns` to a row, under a title line."""
    if not charts:
        raise ValueError("no charts to tile")
    w, h = max(c.width for c in charts), max(c.height for c in charts)
    rows = (len(charts) + columns - 1) // columns
    head = 24 if title else 0
    out = Image.new("RGB", (w * min(columns, len(charts)), head + h * rows), (255, 255, 255))
    for i, chart in enumerate(charts):
        out.paste(chart, ((i % columns) * w, head + (i // columns) * h))
    if title:
        ImageDraw.Draw(out).text((10, 6), title, fill=(0, 0, 0))
    return out
