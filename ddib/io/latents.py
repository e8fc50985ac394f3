"""Latent files: the encoded z of a batch as safetensors (and a hue-quotient encoder's θ per image), with what
produced it in the metadata."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..errors import DDIBError
from .atomic import atomic_write


def save_latents(path: str | Path, z: torch.Tensor, metadata: dict, hue: torch.Tensor | None = None) -> None:
    """Write z (B, ...) under the key "latent" (and hues (B,) in radians under "hue"); metadata values are stored
    as JSON strings."""
    tensors = {"latent": z.detach().cpu().contiguous()}
    if hue is not None:
        tensors["hue"] = hue.detach().cpu().float().contiguous()
    blob = safetensors.torch.save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()})
    atomic_write(Path(path), lambda f: f.write(blob))


def load_latents(path: str | Path) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    """(z, metadata, hues or None) from a latent file written by `save_latents`."""
    path = Path(path)
    if not path.is_file():
        raise DDIBError(f"latent file not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "latent" not in f.keys():
                raise DDIBError(f"{path} holds no 'latent' tensor")
            z = f.get_tensor("latent")
            hue = f.get_tensor("hue").float() if "hue" in f.keys() else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDIBError(f"cannot read latent file {path}: {exc}") from None
    decoded = {}
    for k, v in meta.items():
        try:
            decoded[k] = json.loads(v)
        except json.JSONDecodeError:
            decoded[k] = v
    if hue is not None and hue.shape != z.shape[:1]:
        raise DDIBError(f"{path} holds {len(z)} latents but hues of shape {tuple(hue.shape)}")
    return z.float(), decoded, hue
