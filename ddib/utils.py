"""Small tensor helpers shared across the package."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append trailing singleton dims so `x` broadcasts against a tensor of `target_dims` dims (k-diffusion)."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


def resolve_device(name: str = "auto") -> torch.device:
    """Map auto|cpu|cuda|cuda:N|mps to an available torch.device."""
    from .errors import DDIBError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DDIBError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DDIBError(f"--device {name}: CUDA is not available on this machine (try --device cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DDIBError(f"--device {name}: MPS is not available on this machine (try --device cpu)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DDIBError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


@contextmanager
def tf32_kernels(allowed: bool) -> Iterator[None]:
    """Allow or forbid TF32 (10-bit mantissa) CUDA matmuls and convolutions inside the block; restores the flags."""
    # PyTorch lets cuDNN convolutions use TF32 by default, which moves translations by a visible fraction of a level
    # (bench/speed-cuda.md): ODE solves turn it off, and only an explicit speed setting turns it on.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


_REDUCED_PRECISION: ContextVar[bool] = ContextVar("reduced_precision", default=True)


@contextmanager
def reduced_precision(allowed: bool) -> Iterator[None]:
    """Allow or forbid a speed setting's bf16/fp16 autocast of the network inside the block."""
    token = _REDUCED_PRECISION.set(allowed)
    try:
        yield
    finally:
        _REDUCED_PRECISION.reset(token)


def reduced_precision_allowed() -> bool:
    return _REDUCED_PRECISION.get()
