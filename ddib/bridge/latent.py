"""The DDIB latent: z = x(t=1) of the source's probability-flow ODE (DDIB eq. 5) and what travels beside it.

A hue-quotient model's latent is the pair (z, θ): z encodes the image turned to hue 0, θ is the hue it had, and
decoding turns the target's hue-0 image back to θ. A class-conditional source records the class it encoded with.
Whatever a bridge must carry from encode to decode lives here, so no caller threads it by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..errors import DDIBError
from ..io.atomic import atomic_write


@dataclass(frozen=True)
class Latent:
    """z (N, ...) with each item's hue θ (N,) in radians (hue-quotient encoders) and class label (N,) (conditional
    encoders); `meta` says what produced it (JSON-able)."""

    z: torch.Tensor
    hue: torch.Tensor | None = None
    label: torch.Tensor | None = None
    meta: dict | None = None

    def __post_init__(self):
        for name in ("hue", "label"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (len(self.z),):
                raise DDIBError(f"a latent of {len(self.z)} items has {name}s of shape {tuple(value.shape)}")

    def __len__(self) -> int:
        return len(self.z)

    def __repr__(self) -> str:
        """Shapes, not numbers: a latent of a thousand images prints on one line."""
        show = lambda t: None if t is None else f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"  # noqa: E731
        extra = f"hue={show(self.hue)}, label={show(self.label)}, meta={self.meta}"
        return f"Latent(z={show(self.z)} on {self.z.device}, {extra})"

    def __getitem__(self, index) -> Latent:
        """The items at `index` (a slice, list or index tensor), with what travels beside each."""
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return Latent(self.z[index], pick(self.hue), pick(self.label), self.meta)

    def to(self, device: torch.device | str) -> Latent:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Latent(self.z.to(device), move(self.hue), move(self.label), self.meta)

    def cpu(self) -> Latent:
        return self.to("cpu")

    def with_z(self, z: torch.Tensor) -> Latent:
        """Another z (a perturbed one, say) with the same items' hues and labels."""
        if len(z) != len(self.z):
            raise DDIBError(f"a latent of {len(self.z)} items cannot take a z of {len(z)}")
        return replace(self, z=z)

    def with_meta(self, **meta) -> Latent:
        return replace(self, meta={**(self.meta or {}), **meta})

    @staticmethod
    def cat(latents: list[Latent]) -> Latent:
        """The latents one after another (all carry hues, or none; likewise labels)."""
        if not latents:
            raise DDIBError("no latents to join")

        def joined(name: str) -> torch.Tensor | None:
            values = [getattr(lat, name) for lat in latents]
            if all(v is None for v in values):
                return None
            if any(v is None for v in values):
                raise DDIBError(f"cannot join latents with and without {name}s")
            return torch.cat(values)

        return Latent(torch.cat([lat.z for lat in latents]), joined("hue"), joined("label"), latents[0].meta)

    def save(self, path: str | Path) -> None:
        """Write a `.safetensors` file: z under "latent", hues under "hue", labels under "label"; `meta` values as
        JSON strings in the header."""
        tensors = {"latent": self.z.detach().cpu().contiguous()}
        if self.hue is not None:
            tensors["hue"] = self.hue.detach().cpu().float().contiguous()
        if self.label is not None:
            tensors["label"] = self.label.detach().cpu().long().contiguous()
        header = {k: json.dumps(v) for k, v in (self.meta or {}).items()}
        blob = safetensors.torch.save(tensors, metadata=header)
        atomic_write(Path(path), lambda f: f.write(blob))

    @staticmethod
    def load(path: str | Path) -> Latent:
        """A latent file written by `Latent.save` (or by `ddib translate --save-latent`)."""
        path = Path(path)
        if not path.is_file():
            raise DDIBError(f"latent file not found: {path}")
        try:
            with safetensors.safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                keys = set(f.keys())
                if "latent" not in keys:
                    raise DDIBError(f"{path} holds no 'latent' tensor")
                z = f.get_tensor("latent").float()
                hue = f.get_tensor("hue").float() if "hue" in keys else None
                label = f.get_tensor("label").long() if "label" in keys else None
        except (SafetensorError, OSError, ValueError) as exc:
            raise DDIBError(f"cannot read latent file {path}: {exc}") from None
        meta = {}
        for k, v in header.items():
            try:
                meta[k] = json.loads(v)
            except json.JSONDecodeError:
                meta[k] = v
        try:
            return Latent(z, hue, label, meta)
        except DDIBError as exc:
            raise DDIBError(f"{path}: {exc}") from None
