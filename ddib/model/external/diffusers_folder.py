"""diffusers folders: a pipeline (model_index.json, unet/, scheduler/), a bare unet/ + scheduler/ pair, or the older
flat layout (the UNet's config.json, its weights and scheduler_config.json side by side).

Two kinds: DDPM-type models (a β table, ε/v/x₀ output, data in [-1, 1]) and score-SDE VE models (`ScoreSdeVeScheduler`
with a Fourier-embedded UNet2DModel, as google/ncsnpp-*: conditioned on σ, it outputs the score ∇ log p(x̄) and
was trained on data in [0, 1]).

The network is diffusers' own `UNet2DModel`, built and loaded by the `diffusers` package (the `ddib[diffusers]`
extra); the scheduler config is read here, since ddib solves with its own solvers and needs only its noise table
and parameterisation.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import DDIBError
from ..diffusion import DiffusionConfig

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
# Schedulers over one DDPM β table (they differ in how they sample, which ddib's solvers replace).
DDPM_SCHEDULERS = {
    "DDPMScheduler", "DDIMScheduler", "DDIMInverseScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "DPMSolverSDEScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DDPMParallelScheduler", "DDIMParallelScheduler",
}  # fmt: skip
VE_SCHEDULER = "ScoreSdeVeScheduler"
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "sample"}
LATENT_PARTS = ("vae", "vqvae", "vq_vae")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DDIBError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise DDIBError(f"{path} is not a JSON object")
    return data


def is_diffusers_folder(path: Path) -> bool:
    """A folder in one of diffusers' layouts (for format detection; `parts` says what is wrong with it)."""
    path = Path(path)
    return path.is_dir() and (
        (path / "model_index.json").is_file()
        or (path / "unet" / "config.json").is_file()
        or ((path / "config.json").is_file() and (path / "scheduler_config.json").is_file())
    )


def parts(path: Path) -> tuple[Path, Path]:
    """(the UNet's folder, the scheduler config file) of a diffusers folder, refusing latent pipelines."""
    path = Path(path)
    index = path / "model_index.json"
    if index.is_file():
        components = _read_json(index)
        latent = [p for p in LATENT_PARTS if p in components]
        if latent:
            raise DDIBError(f"{path} is a latent diffusion pipeline (it has a {latent[0]}); latent models are not "
                            "supported yet: ddib bridges pixel-space models")  # fmt: skip
        if "unet" not in components:
            raise DDIBError(f"{path}: model_index.json names no unet")
    if (path / "unet").is_dir():
        unet, scheduler = path / "unet", path / "scheduler" / "scheduler_config.json"
    else:
        unet, scheduler = path, path / "scheduler_config.json"
    if not (unet / "config.json").is_file():
        raise DDIBError(f"{path}: no UNet config ({unet / 'config.json'} is missing)")
    if not scheduler.is_file():
        raise DDIBError(f"{path}: no scheduler config ({scheduler} is missing)")
    weights(unet)
    return unet, scheduler


def weights(unet_dir: Path) -> tuple[Path, str | None]:
    """The UNet's weights file and its variant: diffusion_pytorch_model.safetensors (or .bin), else a variant's
    (diffusion_pytorch_model.fp16.safetensors, as hub folders saved with `variant="fp16"` hold)."""
    for name in WEIGHT_FILES:
        if (unet_dir / name).is_file():
            return unet_dir / name, None
    for suffix in (".safetensors", ".bin"):
        found = sorted(unet_dir.glob(f"diffusion_pytorch_model.*{suffix}"))
        if found:
            return found[0], found[0].name[len("diffusion_pytorch_model.") : -len(suffix)]
    raise DDIBError(f"{unet_dir.parent if unet_dir.name == 'unet' else unet_dir}: the UNet has no weights ({unet_dir} "
                    f"holds no {' or '.join(WEIGHT_FILES)}, nor a variant of them)")  # fmt: skip


def diffusion_config(scheduler_file: Path) -> DiffusionConfig:
    """The noise schedule and parameterisation of a scheduler config: a DDPM-type one's β table (no
    prediction_type: epsilon), or a ScoreSdeVeScheduler's σ range."""
    cfg = _read_json(scheduler_file)
    name = cfg.get("_class_name", "DDPMScheduler")
    if name == VE_SCHEDULER:
        return _ve_config(scheduler_file, cfg)
    if name not in DDPM_SCHEDULERS:
        raise DDIBError(f"{scheduler_file}: scheduler {name} is not supported; ddib reads DDPM-type schedulers "
                        "(a β table over discrete timesteps: DDPM, DDIM, PNDM, DPM-Solver, Euler, ...) and "
                        f"{VE_SCHEDULER}")  # fmt: skip
    prediction = cfg.get("prediction_type") or "epsilon"
    if prediction not in PREDICTIONS:
        raise DDIBError(f"{scheduler_file}: prediction_type {prediction!r} is not supported ({', '.join(PREDICTIONS)})")
    if cfg.get("rescale_betas_zero_snr"):
        raise DDIBError(f"{scheduler_file}: zero-terminal-SNR schedules (rescale_betas_zero_snr) are not supported")
    betas = cfg.get("trained_betas")
    schedule = "trained_betas" if betas else cfg.get("beta_schedule", "linear")
    if schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2", "trained_betas"):
        raise DDIBError(f"{scheduler_file}: beta_schedule {schedule!r} is not supported "
                        "(linear, scaled_linear, squaredcos_cap_v2, trained_betas)")  # fmt: skip
    return DiffusionConfig(
        schedule=schedule, num_train_timesteps=int(cfg.get("num_train_timesteps", 1000)),
        beta_start=float(cfg.get("beta_start", 1e-4)), beta_end=float(cfg.get("beta_end", 0.02)),
        trained_betas=tuple(betas) if betas else None, prediction=PREDICTIONS[prediction], noise_input="timestep",
    )  # fmt: skip


def _ve_config(scheduler_file: Path, cfg: dict) -> DiffusionConfig:
    """A VE SDE over [σ_min, σ_max] (diffusers' defaults 0.01 and 1348); the network's input is σ itself and its data
    [0, 1]. Its output is turned into ε̂ by the network adapter (`external.ScoreNet`)."""
    sigma_min, sigma_max = float(cfg.get("sigma_min", 0.01)), float(cfg.get("sigma_max", 1348.0))
    if not 0 < sigma_min < sigma_max:
        raise DDIBError(f"{scheduler_file}: needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    return DiffusionConfig(schedule="ve", sigma_min=sigma_min, sigma_max=sigma_max, prediction="eps",
                           noise_input="timestep", centered=False)  # fmt: skip


def unet_config(unet_dir: Path, score_sde: bool = False) -> dict:
    """The UNet's config.json, checked to be a pixel-space UNet2DModel whose time embedding fits its scheduler (the
    diffusers package must be there to run it)."""
    require_diffusers()
    config = _read_json(unet_dir / "config.json")
    kind = config.get("_class_name", "UNet2DModel")
    if kind != "UNet2DModel":
        raise DDIBError(f"{unet_dir}: {kind} is not supported; ddib bridges pixel-space UNet2DModel networks")
    embedding = config.get("time_embedding_type", "positional")
    if embedding != ("fourier" if score_sde else "positional"):
        need = f"a {VE_SCHEDULER} needs" if score_sde else "DDPM-type schedulers need"
        raise DDIBError(f"{unet_dir}: a {embedding} time embedding does not go with its scheduler ({need} "
                        f"{'fourier' if score_sde else 'positional'})")  # fmt: skip
    return config


def require_diffusers() -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise DDIBError("diffusers folders need the diffusers package: pip install 'ddib[diffusers]'") from None


def load_unet(unet_dir: Path):
    """diffusers' UNet2DModel from a local folder whose config `unet_config` has checked, in float32 (nothing is
    downloaded)."""
    try:
        import torch
        from diffusers import UNet2DModel
        from diffusers.utils import logging

        logging.set_verbosity_error()  # the library never prints; failures come back as the errors below
        return UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True, torch_dtype=torch.float32,
                                           low_cpu_mem_usage=False, variant=weights(unet_dir)[1])  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DDIBError(f"{unet_dir}: cannot build its UNet2DModel: {first}") from None
