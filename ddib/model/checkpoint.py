"""Checkpoints: `config.json` + `model.safetensors` (EMA weights, for inference) + the resumable training state
(`train_state.safetensors` + `train_state.json`, train_state.py).

Every file is written atomically (temp file, fsync, os.replace), in the order train_state → weights →
config, so a process killed at any moment leaves each file either old or new and always loadable.
Nothing is pickled; only a legacy `train_state.pt` is read, once, with `weights_only=True`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DDIBError
from ..io import artifacts
from ..io.artifacts import CONFIG_FILE, WEIGHTS_FILE, write_json

__all__ = ["CONFIG_FILE", "STATE_FILE", "STATE_JSON", "WEIGHTS_FILE", "RunConfig", "TrainConfig", "has_train_state",
           "is_weightless_run", "load_model", "load_model_from_state", "load_train_state", "read_config",
           "save_train_state", "write_json"]  # fmt: skip
from .diffusion import Diffusion, DiffusionConfig
from .nets import ModelConfig, build_network, model_config_from_dict
from .train_state import LEGACY_FILE, STATE_FILE, STATE_JSON, has_train_state, load_train_state, save_train_state

FORMAT = "ddib-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of a run; resuming requires the same ones, except the cooldown."""

    batch_size: int = 128
    lr: float = 3e-4
    warmup_steps: int = 200
    cooldown_steps: int = 0  # linear decay to 0 over the run's last N steps (0: constant after warmup)
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    augment: str = "none"  # training-time augmentation by an exact symmetry (data/augment.py); older configs: none
    label_dropout: float = 0.0  # conditional models: share of labels replaced by "no label" (classifier-free)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a model: its network, its diffusion, its data and how it was trained."""

    model: ModelConfig
    diffusion: DiffusionConfig
    train: TrainConfig
    domain: dict[str, Any]
    # Provenance of a warm start (`ddib train --init-from`): the model the weights started from. Not a setting:
    # resuming does not compare it.
    init: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "domain": dict(self.domain),
            "model": dataclasses.asdict(self.model),
            "diffusion": dataclasses.asdict(self.diffusion),
            "train": dataclasses.asdict(self.train),
        }
        if self.init is not None:
            d["init"] = dict(self.init)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = "config") -> RunConfig:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DDIBError(f"{where} is not a ddib checkpoint config")
        if d.get("version") != FORMAT_VERSION:
            raise DDIBError(
                f"{where} has checkpoint format version {d.get('version')}; this ddib reads {FORMAT_VERSION}"
            )
        try:
            return RunConfig(
                model=model_config_from_dict(d["model"]),
                diffusion=DiffusionConfig(**d["diffusion"]),
                train=TrainConfig(**d["train"]),
                domain=dict(d["domain"]),
                init=dict(d["init"]) if d.get("init") is not None else None,
            )
        except (KeyError, TypeError) as exc:
            raise DDIBError(f"{where} is incompatible with this ddib: {exc}") from None


def versions() -> dict[str, str]:
    import torchvision

    from .. import __version__

    return {"ddib": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__}


def read_config(run_dir: Path) -> tuple[RunConfig, dict[str, Any]]:
    """(RunConfig, the whole JSON) of a model directory."""
    raw = artifacts.read_config(run_dir, FORMAT, FORMAT_VERSION, "model")
    return RunConfig.from_dict(raw, str(Path(run_dir) / CONFIG_FILE)), raw


def save_weights(run_dir: Path, model: Diffusion, metadata: dict[str, str], dtype: torch.dtype | None = None) -> None:
    """Write the network weights as safetensors (optionally cast, e.g. to float16 for bundling)."""
    artifacts.save_weights(run_dir, model.net.state_dict(), metadata, dtype)


def is_weightless_run(run_dir: Path) -> bool:
    """A run directory with a resumable state and its config but no model.safetensors (e.g. a committed state)."""
    run_dir = Path(run_dir)
    has = [has_train_state(run_dir), *((run_dir / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE))]
    return has == [True, True, False]


def load_model_from_state(run_dir: Path) -> tuple[Diffusion, RunConfig, dict[str, str]]:
    """The EMA model held in a run's training state (for a run saved without model.safetensors), in eval mode."""
    run_dir = Path(run_dir)
    cfg, _ = read_config(run_dir)
    state = load_train_state(run_dir)
    source = run_dir / (STATE_FILE if (run_dir / STATE_JSON).exists() else LEGACY_FILE)
    model = _inference_model(cfg, state.get("ema", {}), source)
    return model, cfg, {"step": str(state["step"]), "domain": cfg.domain["name"]}


def _inference_model(cfg: RunConfig, tensors: dict[str, torch.Tensor], source: Path) -> Diffusion:
    """The network of `cfg` with exactly these weights, wrapped in its diffusion, in eval mode, without gradients."""
    net = build_network(cfg.model)
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError:
        raise DDIBError(f"{source} does not match the network described in {source.parent / CONFIG_FILE}") from None
    model = Diffusion(net, cfg.diffusion).eval()
    model.requires_grad_(False)
    return model


def _default_steps(raw: dict, path: Path) -> dict[str, int]:
    steps = raw.get("default_steps", {})
    if not (isinstance(steps, dict) and all(isinstance(v, int) and v >= 1 for v in steps.values())):
        raise DDIBError(f'{path}: default_steps must map solvers to positive step counts, e.g. {{"unipc": 10}}')
    return dict(steps)


def _quality_presets(raw: dict, path: Path) -> dict[str, dict]:
    presets = raw.get("quality", {})
    if not (isinstance(presets, dict) and all(isinstance(v, dict) for v in presets.values())):
        raise DDIBError(f'{path}: quality must map solvers to presets, e.g. {{"unipc": {{"fast": {{"steps": 10, ...')
    return dict(presets)


def load_model(run_dir: Path, device: torch.device | str = "cpu") -> tuple[Diffusion, RunConfig, dict[str, str]]:
    """The EMA model of a directory holding config.json + model.safetensors, in eval mode, as float32."""
    run_dir = Path(run_dir)
    cfg, raw = read_config(run_dir)
    tensors, metadata = artifacts.load_weights(run_dir)
    model = _inference_model(cfg, tensors, run_dir / WEIGHTS_FILE).to(device)
    model.solver_grids = dict(raw.get("solver_grids", {}))
    model.default_steps = _default_steps(raw, run_dir / CONFIG_FILE)
    model.quality_presets = _quality_presets(raw, run_dir / CONFIG_FILE)
    return model, cfg, metadata
