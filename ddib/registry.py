"""Where trained models live: a local models directory first, the models bundled with ddib as fallback."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .diffusion import Diffusion
from .errors import DDIBError

BUNDLED_DIR = Path(__file__).parent / "assets" / "models"


@dataclass(frozen=True)
class ModelLocation:
    domain: str
    path: Path
    origin: str  # "local" | "bundled" | the directory, for a model named by its path


def models_dir_or_default(models_dir: str | Path | None) -> Path:
    """--models-dir, else $DDIB_MODELS_DIR, else models/."""
    return Path(models_dir or os.environ.get("DDIB_MODELS_DIR") or "models")


def _is_model_dir(path: Path) -> bool:
    return (path / ckpt.CONFIG_FILE).is_file() and (path / ckpt.WEIGHTS_FILE).is_file()


def available_models(models_dir: str | Path | None = None) -> list[ModelLocation]:
    """Every usable model, local ones shadowing bundled ones of the same domain, sorted by domain."""
    found: dict[str, ModelLocation] = {}
    for origin, root in (("bundled", BUNDLED_DIR), ("local", models_dir_or_default(models_dir))):
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                if sub.is_dir() and _is_model_dir(sub):
                    found[sub.name] = ModelLocation(sub.name, sub, origin)
    return [found[k] for k in sorted(found)]


def is_model_path(spec: str) -> bool:
    """A model named by its directory (`runs/a/fives`) rather than its domain (domain names have no slash)."""
    return "/" in spec or os.sep in spec


def find_model(domain: str, models_dir: str | Path | None = None) -> ModelLocation:
    """The model of a domain: models_dir/<domain> if trained there, else the bundled one; or a model directory."""
    if is_model_path(domain):
        path = Path(domain)
        if not _is_model_dir(path):
            raise DDIBError(f"{path} is not a model directory (no {ckpt.CONFIG_FILE} + {ckpt.WEIGHTS_FILE} in it)")
        cfg, _ = ckpt.read_config(path)
        return ModelLocation(cfg.domain.get("name", path.name), path, str(path))
    local = models_dir_or_default(models_dir) / domain
    if _is_model_dir(local):
        return ModelLocation(domain, local, "local")
    bundled = BUNDLED_DIR / domain
    if _is_model_dir(bundled):
        return ModelLocation(domain, bundled, "bundled")
    names = [m.domain for m in available_models(models_dir)]
    have = f"available: {', '.join(names)}" if names else "no models are available"
    hint = f" (a training run without saved weights is in {local})" if (local / ckpt.STATE_FILE).exists() else ""
    raise DDIBError(
        f"no trained model for domain {domain!r}{hint}; {have}; train one with `ddib train --domain {domain}`"
    )


def load_domain_model(
    domain: str, models_dir: str | Path | None = None, device: torch.device | str = "cpu", symmetry: str = "auto"
) -> tuple[Diffusion, ckpt.RunConfig, ModelLocation]:
    """A domain's model; `symmetry` other than "auto" (the saved config's) overrides its group averaging."""
    loc = find_model(domain, models_dir)
    model, cfg, _ = ckpt.load_model(loc.path, device)
    if symmetry != "auto":
        model.use_symmetry(symmetry)
    return model, cfg, loc


def source_candidates(target: str, source: str | None, models_dir: str | Path | None = None) -> list[str]:
    """--from alone, else every available domain but the target (the caller infers among several)."""
    if source is not None:
        if source == target:
            raise DDIBError(f"--from and --to are both {target!r}; translate between two different domains")
        return [source]
    others = [m.domain for m in available_models(models_dir) if m.domain != target]
    if not others:
        raise DDIBError(f"no trained domain besides {target} to translate from; train one with `ddib train`")
    return others
