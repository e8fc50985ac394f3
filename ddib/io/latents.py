"""Latent files: the encoded z of a batch as safetensors, with what produced it in the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..errors import DDIBError
from .atomic import atomic_write


def save_latents(path: str | Path, z: torch.Tensor, metadata: dict) -> None:
    """Write z (B, ...) under the key "latent"; metadata values are stored as JSON strings."""
    blob = safetensors.torch.save(
        {"latent": z.detach().cpu().contiguous()}, metadata={k: json.dumps(v) for k, v in metadata.items()}
    )
    atomic_write(Path(path), lambda f: f.write(blob))


def load_latents(path: str | Path) -> tuple[torch.Tensor, dict]:
    """(z, metadata) from a latent file written by `save_latents`."""
    path = Path(path)
    if not path.is_file():
        raise DDIBError(f"latent file not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "latent" not in f.keys():
                raise DDIBError(f"{path} holds no 'latent' tensor")
            z = f.get_tensor("latent")
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDIBError(f"cannot read latent file {path}: {exc}") from None
    decoded = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except json.JSONDecodeError:
            decoded[k] = v
    return z.float(), decoded
