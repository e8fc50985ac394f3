"""The artifact format of every trained network ddib ships or saves (diffusion models and the digit classifier):
a folder with `config.json` ({"format", "version", …}) and `model.safetensors`, each written atomically. Weights
never go through pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..errors import DDIBError
from .atomic import atomic_write

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_config(folder: str | Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The JSON config of an artifact folder, checked to be of format `fmt` at `version` (`what` names it)."""
    return read_versioned_json(Path(folder) / CONFIG_FILE, fmt, version, f"{what} config")


def read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """A JSON object checked to be of format `fmt` at `version` (`what` names it in errors)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DDIBError(f"no {what} at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DDIBError(f"{path} is corrupt (not valid JSON)") from None
    except OSError as exc:
        raise DDIBError(f"cannot read {path}: {exc.strerror}") from None
    if not isinstance(raw, dict) or raw.get("format") != fmt:
        raise DDIBError(f"{path} is not a ddib {what}")
    if raw.get("version") != version:
        raise DDIBError(f"{path} has {what} format version {raw.get('version')}; this ddib reads {version}")
    return raw


def save_weights(folder: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
                 dtype: torch.dtype | None = None) -> None:  # fmt: skip
    """Write `model.safetensors` (tensors on the CPU, optionally cast, e.g. to float16 for bundling)."""
    tensors = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in tensors.items()}
    blob = safetensors.torch.save(tensors, metadata={k: str(v) for k, v in metadata.items()})
    atomic_write(Path(folder) / WEIGHTS_FILE, lambda f: f.write(blob))


def load_weights(folder: str | Path, what: str = "model") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(float32 tensors, metadata) of an artifact folder's `model.safetensors` (`what` names it in errors)."""
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.exists():
        raise DDIBError(f"no {what} weights at {weights}")
    try:
        with safetensors.safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = safetensors.torch.load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDIBError(f"{weights} is corrupt or truncated ({exc})") from None
    return {k: v.float() for k, v in tensors.items()}, metadata
