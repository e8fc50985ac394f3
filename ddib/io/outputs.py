"""Where translated images go: an explicit output for each input, never an input, never twice the same."""

from __future__ import annotations

from pathlib import Path

from ..errors import DDIBError
from .images import find_images


def plan_outputs(
    inputs: list[str | Path], suffix: str, out: Path | None = None, out_dir: Path | None = None
) -> list[tuple[Path, Path]]:
    """(input file, output PNG) pairs.

    One input and `out`: exactly that file. Otherwise each file `a/b.png` goes to `a/b-<suffix>.png`, or to
    `<out_dir>/b-<suffix>.png`; images found inside a folder keep their path relative to it, under
    `<folder>-<suffix>/` or under `out_dir`.
    """
    if out is not None and out_dir is not None:
        raise DDIBError("give either --out or --out-dir, not both")
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = find_images(p)
            if not files:
                raise DDIBError(f"no images in folder {p}")
            root = Path(out_dir) if out_dir is not None else p.parent / f"{p.name}-{suffix}"
            pairs += [(f, root / f.relative_to(p).with_suffix(".png")) for f in files]
        elif p.is_file():
            name = f"{p.stem}-{suffix}.png"
            pairs.append((p, (Path(out_dir) / name) if out_dir is not None else p.with_name(name)))
        elif p.exists():
            raise DDIBError(f"not a file or folder: {p}")
        else:
            raise DDIBError(f"input not found: {p}")
    if out is not None:
        if len(pairs) != 1:
            raise DDIBError(f"--out names one file but there are {len(pairs)} inputs; use --out-dir")
        pairs = [(pairs[0][0], Path(out))]
    check_outputs(pairs)
    return pairs


def is_png(path: Path) -> bool:
    """Images and figures are written as PNG, so their names must say so (a .jpg name over PNG data would mislead)."""
    return Path(path).suffix.lower() == ".png"


def check_png(path: Path | None, option: str = "--out") -> None:
    if path is not None and not is_png(path):
        raise DDIBError(f"{option} {path} must be a .png file")


def check_outputs(pairs: list[tuple[Path, Path]], valid=is_png, kind: str = "a .png file") -> None:
    """Refuse an output that is an input, two inputs writing the same output, or an output `valid` rejects."""
    inputs = {p.resolve() for p, _ in pairs}
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        key = dst.resolve()
        if key in inputs:
            raise DDIBError(f"output {dst} is an input; refusing to overwrite it (choose another --out/--out-dir)")
        if key in seen:
            raise DDIBError(f"inputs {seen[key]} and {src} would both write {dst}; use distinct names or --out-dir")
        seen[key] = src
        if not valid(dst):
            raise DDIBError(f"output {dst} must be {kind}")
