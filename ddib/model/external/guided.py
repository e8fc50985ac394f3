"""guided-diffusion / improved-diffusion checkpoints: a `.pt` state dict plus the flags its network was built with.

The flags are guided-diffusion's own (`model_and_diffusion_defaults`), given as a JSON object beside the file
(`256x256_diffusion.json` for `256x256_diffusion.pt`) or as its command-line string ("--image_size 256
--class_cond True ..."). improved-diffusion checkpoints use the same flags; its `rescale_timesteps` default (True)
differs from guided-diffusion's (False), so give it for them. The flags may name a noisy classifier
(`classifier_path`, `classifier_scale` and its architecture flags), whose guidance then steers every decode.
"""

from __future__ import annotations

import json
import pickle
import shlex
from collections.abc import Callable
from pathlib import Path

import torch

from ...errors import DDIBError
from ..diffusion import DiffusionConfig
from .guided_classifier import POOLS, GuidedClassifier
from .guided_unet import GuidedUNet, GuidedUNetConfig

# guided-diffusion's defaults (script_util.model_and_diffusion_defaults), with the entries ddib reads.
DEFAULTS = {
    "image_size": 64, "num_channels": 128, "num_res_blocks": 2, "num_heads": 4, "num_heads_upsample": -1,
    "num_head_channels": -1, "attention_resolutions": "16,8", "channel_mult": "", "class_cond": False,
    "num_classes": 1000, "use_scale_shift_norm": True, "resblock_updown": False, "use_new_attention_order": False,
    "learn_sigma": False, "diffusion_steps": 1000, "noise_schedule": "linear", "predict_xstart": False,
    "rescale_timesteps": False, "in_channels": 3,
}  # fmt: skip
# guided-diffusion's noisy-classifier flags (classifier_defaults, and the sampling scripts' path and scale).
CLASSIFIER_DEFAULTS = {
    "classifier_path": "", "classifier_scale": 1.0, "classifier_width": 128, "classifier_depth": 2,
    "classifier_attention_resolutions": "32,16,8", "classifier_use_scale_shift_norm": True,
    "classifier_resblock_updown": True, "classifier_pool": "attention", "classifier_channel_mult": "",
}  # fmt: skip
# Flags that only matter for training or sampling there (accepted and ignored here).
IGNORED = {"dropout", "use_checkpoint", "use_fp16", "timestep_respacing", "use_kl", "rescale_learned_sigmas",
           "classifier_use_fp16", "batch_size", "num_samples", "use_ddim", "clip_denoised", "model_path", "lr",
           "weight_decay", "microbatch", "ema_rate", "log_interval", "save_interval", "resume_checkpoint",
           "fp16_scale_growth", "schedule_sampler", "lr_anneal_steps", "data_dir", "sigma_small"}  # fmt: skip
# guided-diffusion's channel multipliers by resolution (improved-diffusion's for 32).
CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4),
                32: (1, 2, 2, 2)}  # fmt: skip


def flags_beside(path: Path) -> Path:
    """Where a checkpoint's flags are looked for: the same name with .json."""
    return path.with_suffix(".json")


def parse_flags(text: str) -> dict:
    """guided-diffusion's MODEL_FLAGS string ('--image_size 256 --class_cond True ...') or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            flags = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DDIBError(f"the model flags are not valid JSON: {exc}") from None
        if not isinstance(flags, dict):
            raise DDIBError("the model flags must be a JSON object")
        return flags
    words, flags = shlex.split(text), {}
    for i in range(0, len(words), 2):
        key = words[i]
        if not key.startswith("--") or i + 1 >= len(words):
            raise DDIBError(f"cannot read the model flags at {key!r}: write them as --name value pairs")
        flags[key[2:]] = words[i + 1]
    return flags


def given_flags(flags: str | dict) -> dict:
    """Flags a user gives (MODEL_FLAGS text, JSON text or a dict): a relative `classifier_path` is from the working
    directory, where the user stands, not from the checkpoint's folder as in the JSON beside it."""
    if not isinstance(flags, (str, dict)):
        raise DDIBError(
            f"flags are guided-diffusion's MODEL_FLAGS text, JSON text or a dict, not {type(flags).__name__}"
        )
    parsed = dict(flags) if isinstance(flags, dict) else parse_flags(flags)
    if parsed.get("classifier_path"):
        parsed["classifier_path"] = str(Path(parsed["classifier_path"]).expanduser().resolve())
    return parsed


def _value(key: str, raw, default):
    """A flag's value in its default's type ('True' → True, '16,8' stays a string)."""
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "1", "yes"):
            return True
        if str(raw).lower() in ("false", "0", "no"):
            return False
        raise DDIBError(f"model flag {key} must be True or False, not {raw!r}")
    if isinstance(default, float):
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise DDIBError(f"model flag {key} must be a number, not {raw!r}") from None
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise DDIBError(f"model flag {key} must be an integer, not {raw!r}") from None
    return str(raw)


def resolve_flags(flags: dict) -> dict:
    """The flags with defaults filled in and types checked; unknown flags are an error naming them."""
    known = DEFAULTS | CLASSIFIER_DEFAULTS
    unknown = sorted(set(flags) - set(known) - IGNORED)
    if unknown:
        raise DDIBError(f"unknown guided-diffusion model flags: {', '.join(unknown)}")
    return {k: _value(k, flags[k], d) if k in flags else d for k, d in known.items()}


def _attention_ds(size: int, key: str, text: str) -> tuple[int, ...]:
    """Attention resolutions ('32,16,8') as downsampling rates (8, 16, 32 at 256 px)."""
    try:
        return tuple(size // int(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise DDIBError(f"{key} must be comma-separated sizes, not {text!r}") from None


def _channel_mult(f: dict, key: str) -> tuple[float, ...]:
    """The levels' channel multipliers: the flag `key`, else guided-diffusion's for the image size."""
    size = f["image_size"]
    if f[key]:
        try:
            return tuple(float(m) for m in f[key].split(","))
        except ValueError:
            raise DDIBError(f"{key} must be comma-separated numbers, not {f[key]!r}") from None
    if size in CHANNEL_MULT:
        return CHANNEL_MULT[size]
    raise DDIBError(f"no default {key} for image_size {size}: give {key} (e.g. 1,2,2,2)")


def network_config(f: dict) -> GuidedUNetConfig:
    size = f["image_size"]
    mult = _channel_mult(f, "channel_mult")
    ds = _attention_ds(size, "attention_resolutions", f["attention_resolutions"])
    c = f["in_channels"]
    return GuidedUNetConfig(
        image_size=size, in_channels=c, model_channels=f["num_channels"], out_channels=2 * c if f["learn_sigma"] else c,
        num_res_blocks=f["num_res_blocks"], attention_ds=ds, channel_mult=mult,
        num_classes=f["num_classes"] if f["class_cond"] else 0, num_heads=f["num_heads"],
        num_head_channels=f["num_head_channels"], num_heads_upsample=f["num_heads_upsample"],
        use_scale_shift_norm=f["use_scale_shift_norm"], resblock_updown=f["resblock_updown"],
        use_new_attention_order=f["use_new_attention_order"],
    )  # fmt: skip


def diffusion_config(f: dict) -> DiffusionConfig:
    """guided-diffusion's schedule: `linear` scaled to T steps (β from 1e-4·1000/T to 0.02·1000/T), `cosine` =
    squaredcos_cap_v2; ε or x_0 prediction; timesteps told as n, or n·1000/T with rescale_timesteps."""
    steps = f["diffusion_steps"]
    names = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
    if f["noise_schedule"] not in names:
        raise DDIBError(f"unknown noise_schedule {f['noise_schedule']!r}; guided-diffusion has linear and cosine")
    scale = 1000 / steps
    return DiffusionConfig(
        schedule=names[f["noise_schedule"]], num_train_timesteps=steps, beta_start=scale * 1e-4,
        beta_end=scale * 0.02, prediction="sample" if f["predict_xstart"] else "eps", noise_input="timestep",
        timestep_scale=scale if f["rescale_timesteps"] else 1.0,
    )  # fmt: skip


def describe_keys(missing: list[str], unexpected: list[str]) -> str:
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{what} {', '.join(keys[:3])}{more}")
    return "; ".join(parts)


def load_guided(path: Path, flags: dict) -> tuple[GuidedUNet, GuidedUNetConfig, DiffusionConfig]:
    """The network of a `.pt` state dict (read with weights_only=True) built from its flags, in float32."""
    f = resolve_flags(flags)
    cfg = network_config(f)
    return _load_state(path, lambda: GuidedUNet(cfg), "flags"), cfg, diffusion_config(f)


def load_classifier(path: Path, flags: dict) -> tuple[GuidedClassifier, int, float] | None:
    """The noisy classifier the flags name (`classifier_path`, relative to the checkpoint's folder), its classes
    (`num_classes`) and the scale its guidance is used at (`classifier_scale`), as guided-diffusion's
    `create_classifier` builds it; None without a classifier_path. `classifier_channel_mult` (ddib's) gives the
    levels of a classifier of another size."""
    f = resolve_flags(flags)
    if not f["classifier_path"]:
        return None
    where = _classifier_file(path, f)
    size, mult = f["image_size"], _channel_mult(f, "classifier_channel_mult")
    cfg = GuidedUNetConfig(
        image_size=size, in_channels=f["in_channels"], model_channels=f["classifier_width"],
        out_channels=f["num_classes"], num_res_blocks=f["classifier_depth"], channel_mult=mult,
        attention_ds=_attention_ds(size, "classifier_attention_resolutions", f["classifier_attention_resolutions"]),
        num_head_channels=64, use_scale_shift_norm=f["classifier_use_scale_shift_norm"],
        resblock_updown=f["classifier_resblock_updown"],
    )  # fmt: skip
    if f["classifier_pool"] not in POOLS:
        raise DDIBError(f"unknown classifier_pool {f['classifier_pool']!r}; guided-diffusion has {', '.join(POOLS)}")
    net = _load_state(where, lambda: GuidedClassifier(cfg, f["classifier_pool"]), "classifier flags")
    return net, f["num_classes"], f["classifier_scale"]


def classifier_summary(path: Path, flags: dict) -> tuple[int, float] | None:
    """(classes, guidance scale) of the noisy classifier the flags name, read without its weights; None without one."""
    f = resolve_flags(flags)
    if not f["classifier_path"]:
        return None
    where = _classifier_file(path, f)
    if not where.is_file():
        raise DDIBError(f"checkpoint not found: {where}")
    if f["classifier_pool"] not in POOLS:
        raise DDIBError(f"unknown classifier_pool {f['classifier_pool']!r}; guided-diffusion has {', '.join(POOLS)}")
    return f["num_classes"], f["classifier_scale"]


def _classifier_file(path: Path, f: dict) -> Path:
    """`classifier_path`, relative to the checkpoint's folder unless absolute."""
    where = Path(f["classifier_path"]).expanduser()
    return where if where.is_absolute() else Path(path).parent / where


def _load_state(path: Path, build: Callable[[], torch.nn.Module], flags: str) -> torch.nn.Module:
    """The network `build` makes, holding the `.pt` state dict at `path` (read with weights_only=True), checked key
    for key, in float32. Built without memory and filled with the file's tensors, memory-mapped where the file
    allows: a large checkpoint is neither held twice nor initialised only to be overwritten."""
    state = _read_state(path)
    with torch.device("meta"):
        net = build()
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise DDIBError(f"{path} does not match its {flags}: {describe_keys(missing, unexpected)}")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        k, more = wrong[0], f" ({len(wrong) - 1} more differ)" if len(wrong) > 1 else ""
        given, built = tuple(state[k].shape), tuple(own[k].shape)
        raise DDIBError(f"{path} does not match its {flags}: {k} is {given}, the {flags} give {built}{more}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    return net


def _read_state(path: Path) -> dict:
    """The state dict of tensors at `path`: memory-mapped (zip-format files, as torch.save writes them since 1.6),
    else read whole."""
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DDIBError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError:  # weights_only=True refuses pickled objects, which could run code
        raise DDIBError(f"{path} holds pickled objects, not a plain state dict: load it where you trust it and "
                        "torch.save its model's state_dict()") from None  # fmt: skip
    except Exception as exc:  # a truncated or foreign file
        raise DDIBError(f"{path} is not a readable state dict ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise DDIBError(f"{path} is not a state dict of tensors")
    return state
