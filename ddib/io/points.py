"""Point files in and out: CSV (two comma-separated columns x, y; optional header) or .npy (an N×2 array)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..errors import DDIBError
from .atomic import atomic_write

POINT_SUFFIXES = (".csv", ".npy")


def is_point_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in POINT_SUFFIXES


def read_points(path: str | Path) -> np.ndarray:
    """(N, 2) float64 points from a .csv or .npy file; every problem is a one-line DDIBError.

    CSV: one point per line, `x,y`; blank lines and lines starting with '#' are skipped; a first line that
    is not numeric (such as `x,y`) is taken as a header.
    """
    path = Path(path)
    if not path.exists():
        raise DDIBError(f"input not found: {path}")
    if not path.is_file():
        raise DDIBError(f"not a file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        points = _read_npy(path)
    elif suffix == ".csv":
        points = _read_csv(path)
    else:
        raise DDIBError(f"{path}: point files must be .csv or .npy")
    if len(points) == 0:
        raise DDIBError(f"{path} holds no points")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise DDIBError(f"{path}: point {int(np.argmax(bad)) + 1} is not finite ({points[bad][0].tolist()})")
    return points


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DDIBError(f"cannot read {path}: not a valid .npy array ({str(exc).splitlines()[0]})") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DDIBError(f"{path}: expected an N×2 array of points, got shape {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DDIBError(f"{path}: expected numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _read_csv(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DDIBError(f"cannot read {path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise DDIBError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows: list[tuple[float, float]] = []
    header_allowed = True
    for lineno, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
            continue
        if len(fields) != 2:
            raise DDIBError(f"{path}, line {lineno}: expected 2 comma-separated columns (x, y), found {len(fields)}")
        try:
            rows.append((float(fields[0]), float(fields[1])))
        except ValueError:
            if header_allowed and not any(_is_number(f) for f in fields):
                header_allowed = False
                continue
            bad = next(f for f in fields if not _is_number(f))
            raise DDIBError(f"{path}, line {lineno}: {bad.strip()!r} is not a number") from None
        header_allowed = False
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_points(path: str | Path, points: np.ndarray) -> None:
    """Write (N, 2) points atomically: CSV with an `x,y` header (9 significant digits) or float64 .npy."""
    path = Path(path)
    points = np.asarray(points, dtype=np.float64)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, points, allow_pickle=False)
        atomic_write(path, lambda f: f.write(buf.getbuffer()))
    elif suffix == ".csv":
        text = "x,y\n" + "".join(f"{x:.9g},{y:.9g}\n" for x, y in points.tolist())
        atomic_write(path, lambda f: f.write(text.encode()))
    else:
        raise DDIBError(f"output {path} must be a .csv or .npy file")
