"""Resumable training state without pickle: tensors in `train_state.safetensors`, the rest in `train_state.json`.

The tensors file holds the weights (`net.*`), their EMA (`ema.*`), the optimizer's per-parameter tensors
(`optimizer.<index>.<name>`, e.g. Adam's moments) and the RNG states as uint8 (`rng.cpu`, `rng.cuda`). The JSON
holds the step, the run config, the optimizer's param_groups and its scalar per-parameter state (Adam's step),
and the SHA-256 of the tensors file it belongs to.

A save moves the current tensors file aside (`train_state.previous.safetensors`), writes the new one, then the
JSON, each atomically; only then is the previous file removed. A process killed at any point leaves a JSON whose
checksum matches one of the two tensors files, so the pair read back is always the old state or the new one.
A legacy `train_state.pt` (torch.save) is read once with `weights_only=True`; the next save replaces it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..errors import DDIBError
from ..io.artifacts import read_versioned_json, write_json
from ..io.atomic import atomic_write

STATE_FILE = "train_state.safetensors"
STATE_JSON = "train_state.json"
PREVIOUS_FILE = "train_state.previous.safetensors"
LEGACY_FILE = "train_state.pt"
FORMAT = "ddib-train-state"
VERSION = 1
MODULES = ("net", "ema")  # state_dicts of whole networks
RNG = {"rng_cpu": "rng.cpu", "rng_cuda": "rng.cuda"}


def has_train_state(run_dir: Path) -> bool:
    """Whether a run directory holds a resumable state (this format or a legacy train_state.pt)."""
    return (Path(run_dir) / STATE_JSON).is_file() or (Path(run_dir) / LEGACY_FILE).is_file()


def save_train_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Write {step, config, net, ema, optimizer, rng_cpu[, rng_cuda]} as the tensors file, then the JSON."""
    run_dir = Path(run_dir)
    tensors, record = _split(state)
    blob = safetensors.torch.save(tensors, metadata={"format": FORMAT, "step": str(record["step"])})
    record["tensors"] = {"file": STATE_FILE, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    current, previous = run_dir / STATE_FILE, run_dir / PREVIOUS_FILE
    # Keep the tensors the current JSON names until the new JSON lands; after an interrupted save the previous
    # file may be the one it names, and then the current file is an unfinished save's.
    moved = current.exists() and not _previous_is_named(run_dir)
    if moved:
        _replace(current, previous)
    try:
        atomic_write(current, lambda f: f.write(blob))
    except BaseException:
        if moved:  # a write that failed leaves the files as they were
            os.replace(previous, current)
        raise
    write_json(run_dir / STATE_JSON, record)
    for stale in (previous, run_dir / LEGACY_FILE):
        stale.unlink(missing_ok=True)


def load_train_state(run_dir: Path) -> dict[str, Any] | None:
    """The resumable state of a run as save_train_state took it, or None when it has none."""
    run_dir = Path(run_dir)
    if not (run_dir / STATE_JSON).exists():
        return _load_legacy(run_dir / LEGACY_FILE) if (run_dir / LEGACY_FILE).exists() else None
    record = _read_record(run_dir)
    path = _matching(run_dir, record)
    if path is None:
        raise DDIBError(
            f"{run_dir / STATE_FILE} is corrupt or not the one {STATE_JSON} names (its checksum differs); "
            "remove both to start over"
        )
    try:
        tensors = safetensors.torch.load(path.read_bytes())
    except (SafetensorError, ValueError) as exc:
        raise DDIBError(f"{path} is corrupt ({exc}); remove it and {STATE_JSON} to start over") from None
    return _join(tensors, record, run_dir / STATE_JSON)


def _split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON record) of a state: every tensor with a dimension to the tensors, scalars to the record."""
    tensors: dict[str, torch.Tensor] = {}
    record: dict[str, Any] = {"format": FORMAT, "version": VERSION, "step": int(state["step"])}
    record["config"] = state["config"]
    for module in MODULES:
        tensors.update({f"{module}.{k}": v for k, v in state[module].items()})
    optim = state["optimizer"]
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in optim["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors[f"optimizer.{index}.{name}"] = value
            elif isinstance(value, torch.Tensor):  # a 0-d tensor, e.g. Adam's step: its value and dtype
                scalars.setdefault(str(index), {})[name] = {"value": value.item(), "dtype": _dtype_name(value)}
            else:
                scalars.setdefault(str(index), {})[name] = value
    record["optimizer"] = {"param_groups": optim["param_groups"], "scalars": scalars}
    for key, name in RNG.items():
        if key in state:
            tensors[name] = state[key]
    extra = set(state) - {"step", "config", "optimizer", *MODULES, *RNG}
    if extra:
        raise ValueError(f"train state entries without a place in the format: {sorted(extra)}")
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, record


def _join(tensors: dict[str, torch.Tensor], record: dict[str, Any], where: Path) -> dict[str, Any]:
    """The state dict save_train_state was given, from its tensors and JSON record."""
    try:
        state: dict[str, Any] = {"step": int(record["step"]), "config": record["config"]}
        for module in MODULES:
            prefix = f"{module}."
            state[module] = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        per_param: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                per_param.setdefault(int(index), {})[name] = value
        for index, values in record["optimizer"]["scalars"].items():
            for name, value in values.items():
                if isinstance(value, dict):
                    value = torch.tensor(value["value"], dtype=getattr(torch, value["dtype"]))
                per_param.setdefault(int(index), {})[name] = value
        groups = record["optimizer"]["param_groups"]
        state["optimizer"] = {"state": dict(sorted(per_param.items())), "param_groups": groups}
        for key, name in RNG.items():
            if name in tensors:
                state[key] = tensors[name]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DDIBError(f"{where} is incompatible with this ddib ({type(exc).__name__}: {exc})") from None
    return state


def _read_record(run_dir: Path) -> dict[str, Any]:
    return read_versioned_json(run_dir / STATE_JSON, FORMAT, VERSION, "training state")


def _matching(run_dir: Path, record: dict[str, Any]) -> Path | None:
    """The tensors file whose SHA-256 the record names: the current one, or the previous one after a cut save."""
    want = (record.get("tensors") or {}).get("sha256")
    for path in (run_dir / STATE_FILE, run_dir / PREVIOUS_FILE):
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == want:
            return path
    return None


def _previous_is_named(run_dir: Path) -> bool:
    """Whether a save was cut after moving the tensors aside: the JSON still names the previous file."""
    if not (run_dir / PREVIOUS_FILE).exists() or not (run_dir / STATE_JSON).exists():
        return False
    return _matching(run_dir, _read_record(run_dir)) == run_dir / PREVIOUS_FILE


def _load_legacy(path: Path) -> dict[str, Any]:
    """A train_state.pt written by torch.save, read without executing pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong pickle: all mean the same to the user
        raise DDIBError(f"{path} is corrupt or incompatible ({type(exc).__name__}); remove it to start over") from None


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _replace(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        raise DDIBError(f"cannot write {dst}: {exc.strerror or exc}") from None
