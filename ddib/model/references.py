"""Registered foreign models: `<models dir>/<name>/reference.json` names a diffusers folder or a guided-diffusion
checkpoint by its path (the weights are not copied), with a label and the flags it needs, and keeps what ddib
learns about it (tuned solves, default step counts, quality presets) as ddib's own configs do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DDIBError
from ..io import artifacts

REFERENCE_FILE = "reference.json"
FORMAT = "ddib-reference"
VERSION = 1


@dataclass(frozen=True)
class Reference:
    """A foreign model by path: its format, the label it stands for (class-conditional models) and its flags."""

    format: str
    path: Path
    label: int | None = None
    flags: dict[str, Any] | None = field(default=None, compare=False)
    solver_grids: dict[str, Any] = field(default_factory=dict, compare=False)
    default_steps: dict[str, int] = field(default_factory=dict, compare=False)
    quality: dict[str, Any] = field(default_factory=dict, compare=False)  # presets (`bridge.presets`)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "model_format": self.format, "path": str(self.path),
                "label": self.label, "flags": self.flags, "solver_grids": self.solver_grids,
                "default_steps": self.default_steps, "quality": self.quality}  # fmt: skip


def is_reference_dir(path: Path) -> bool:
    return (Path(path) / REFERENCE_FILE).is_file()


def read_reference(folder: Path) -> Reference:
    path = Path(folder) / REFERENCE_FILE
    raw = _read(path)
    try:
        return Reference(raw["model_format"], Path(raw["path"]), raw.get("label"), raw.get("flags"),
                         dict(raw.get("solver_grids") or {}), dict(raw.get("default_steps") or {}),
                         dict(raw.get("quality") or {}))  # fmt: skip
    except (KeyError, TypeError):
        raise DDIBError(f"{path} is not a ddib model reference") from None


def _read(path: Path) -> dict[str, Any]:
    import json

    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise DDIBError(f"{path} is unreadable or not valid JSON") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise DDIBError(f"{path} is not a ddib model reference (version {VERSION})")
    return raw


def write_reference(folder: Path, ref: Reference) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    artifacts.write_json(Path(folder) / REFERENCE_FILE, ref.to_dict())
