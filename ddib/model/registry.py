"""Where trained models live: a local models directory first, the models bundled with ddib as fallback."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data.colored_mnist import DIGIT_DOMAINS
from ..errors import DDIBError
from ..io.images import to_uint8, to_unit_range
from . import checkpoint as ckpt
from . import external
from .diffusion import Diffusion, unwrap
from .references import Reference, is_reference_dir, read_reference

BUNDLED_DIR = Path(__file__).parents[1] / "assets" / "models"


@dataclass(frozen=True)
class ModelLocation:
    """Where a domain's model is: its own directory, or a label of a class-conditional model's directory."""

    domain: str
    path: Path
    origin: str  # "local" | "bundled" | the directory, for a model named by its path
    label: str | None = None  # the domain is this label of the conditional model at `path`
    reference: Reference | None = None  # a foreign model (diffusers, guided-diffusion): where it is, its label

    @property
    def format(self) -> str:
        return "ddib" if self.reference is None else self.reference.format

    @property
    def is_union(self) -> bool:
        """A conditional model used without a label: the model of all its domains together, not a domain."""
        return self.label is None and bool(model_labels(self.path))

    @property
    def where(self) -> str:
        """For summaries: 'local', 'digits: conditional, local' for a label of a conditional model, or 'diffusers,
        local' for a foreign model."""
        if self.reference is not None:
            return f"{self.reference.format}, {self.origin}"
        return f"{self.path.name}: conditional, {self.origin}" if self.label is not None else self.origin


def models_dir_or_default(models_dir: str | Path | None) -> Path:
    """--models-dir, else $DDIB_MODELS_DIR, else models/."""
    return Path(models_dir or os.environ.get("DDIB_MODELS_DIR") or "models")


def _is_model_dir(path: Path) -> bool:
    """A ddib model directory, or a registered reference to a foreign model."""
    return is_ddib_model_dir(path) or is_reference_dir(path)


def is_ddib_model_dir(path: Path) -> bool:
    """A model ddib trained or exported: config.json + model.safetensors."""
    return (Path(path) / ckpt.CONFIG_FILE).is_file() and (Path(path) / ckpt.WEIGHTS_FILE).is_file()


def model_labels(path: Path) -> list[str]:
    """The labels of a class-conditional model's directory ([] for a model of one domain or a foreign model)."""
    if is_reference_dir(path):
        return []
    try:
        cfg, _ = ckpt.read_config(path)
    except DDIBError:
        return []
    return list(cfg.domain.get("labels", [])) if cfg.domain.get("kind") == "group" else []


def _roots(models_dir: str | Path | None) -> list[tuple[str, Path]]:
    """Where models are looked for, first match wins: the models directory, then the bundled models."""
    return [("local", models_dir_or_default(models_dir)), ("bundled", BUNDLED_DIR)]


def available_models(models_dir: str | Path | None = None) -> list[ModelLocation]:
    """Every usable domain, sorted by name, each resolved as `find_model` does (labels of conditional models too)."""
    names: set[str] = set()
    for _, root in _roots(models_dir):
        if root.is_dir():
            for sub in root.iterdir():
                if sub.is_dir() and _is_model_dir(sub):
                    names.add(sub.name)
                    names.update(model_labels(sub))
    unusable = {run.name for run in weightless_runs(models_dir)}
    return [find_model(name, models_dir) for name in sorted(names - unusable)]


def weightless_runs(models_dir: str | Path | None = None) -> list[Path]:
    """Training runs in the models directory that have no saved weights yet (they shadow bundled models)."""
    root = models_dir_or_default(models_dir)
    return sorted(sub for sub in root.iterdir() if ckpt.is_weightless_run(sub)) if root.is_dir() else []


def is_model_path(spec: str) -> bool:
    """A model named by its path (`runs/a/fives`, `cats/`, `model.pt`) rather than its domain (domain names have no
    slash)."""
    return "/" in spec or os.sep in spec or spec.endswith(external.CHECKPOINT_SUFFIXES)


def _with_label(loc: ModelLocation, label: str) -> ModelLocation:
    """One class of a foreign class-conditional model: `PATH:260` (its labels are class indices)."""
    try:
        index = int(label)
    except ValueError:
        raise DDIBError(f"{loc.domain}: labels of a {loc.format} model are class numbers, not {label!r}") from None
    if loc.reference.label is not None:
        raise DDIBError(f"{loc.domain} already stands for label {loc.reference.label}")
    return replace(loc, domain=f"{loc.domain}:{index}", reference=replace(loc.reference, label=index))


def _path_location(spec: str) -> ModelLocation:
    """A model named by its path: a ddib model directory, a diffusers folder or a guided-diffusion checkpoint."""
    path = Path(spec)
    if _is_model_dir(path) and not is_reference_dir(path):
        cfg, _ = ckpt.read_config(path)
        return ModelLocation(cfg.domain.get("name", path.name), path, str(path))
    if is_reference_dir(path):
        return ModelLocation(path.name, path, str(path), reference=read_reference(path))
    fmt = external.detect_format(path)
    if fmt is not None:
        name = path.stem if path.is_file() else path.name
        return ModelLocation(name, path, str(path), reference=Reference(fmt, path))
    if not path.exists():
        raise external.not_found(spec)
    raise not_a_model(path, f"ddib's ({ckpt.CONFIG_FILE} + {ckpt.WEIGHTS_FILE}), ")


def not_a_model(path: Path, also: str = "") -> DDIBError:
    """The error for an existing path that holds no model: the model it is part of, else the formats that load."""
    model = _model_around(path)
    if model is not None:
        return DDIBError(f"{path} is part of a model, not one: name {model} instead")
    return DDIBError(
        f"{path} is not a model directory: neither {also}a diffusers folder (model_index.json, unet/ + scheduler/, "
        "or config.json + scheduler_config.json) nor a guided-diffusion checkpoint (.pt)"
    )


def _model_around(path: Path) -> Path | None:
    """The model a path belongs to: the folder above a weights file or a pipeline's `unet/`, or the checkpoint a
    flags JSON stands beside."""
    for suffix in external.CHECKPOINT_SUFFIXES:
        if path.is_file() and path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    for above in list(path.parents)[:2]:
        if _is_model_dir(above) or external.detect_format(above) is not None:
            return above
    return None


def find_model(domain: str, models_dir: str | Path | None = None) -> ModelLocation:
    """The model of a domain. First match: <models dir>/<domain>, a label of a conditional model in the models
    dir, the bundled <domain>, a label of a bundled conditional model. Also `MODEL:LABEL` (one label of a named
    conditional model) and model directories (`runs/a/fives`, `runs/a/digits:fives`, or a bare `ddpm-cat-256` that
    names no domain)."""
    spec, _, label = domain.partition(":")
    if label:
        loc = find_model(spec, models_dir)
        if loc.reference is not None:
            return _with_label(loc, label)
        labels = model_labels(loc.path)
        if not labels:
            raise DDIBError(f"{spec} is not a conditional model, so it has no label {label!r}")
        if label not in labels:
            raise DDIBError(f"{spec} has no label {label!r}; its labels are {', '.join(labels)}")
        return ModelLocation(label, loc.path, loc.origin, label)
    if is_model_path(spec):
        return _path_location(spec)
    for origin, root in _roots(models_dir):
        if is_reference_dir(root / spec):
            return ModelLocation(spec, root / spec, origin, reference=read_reference(root / spec))
        if _is_model_dir(root / spec):
            return ModelLocation(spec, root / spec, origin)
        if origin == "local" and ckpt.is_weightless_run(root / spec):
            # a local run shadows the bundled model of its name even before it has weights: never swap silently
            raise DDIBError(
                f"{root / spec} is a training run without saved weights; write them with `ddib export --domain "
                f"{spec} --models-dir {root} --out DIR` (its EMA weights), or let it reach its next checkpoint"
            )
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                if sub.is_dir() and _is_model_dir(sub) and spec in model_labels(sub):
                    return ModelLocation(spec, sub, origin, spec)
    if _is_model_dir(Path(spec)) or external.detect_format(spec) is not None:
        return _path_location(spec)  # `--from ddpm-cat-256`: a model folder here that no domain's name claims
    names = [m.domain for m in available_models(models_dir)]
    have = f"available: {', '.join(names)}" if names else "no models are available"
    raise DDIBError(f"no trained model for domain {spec!r}; {have}; train one with `ddib train --domain {spec}`")


# The last conditional model loaded, by (directory, device, weights' mtime and size): both ends of a bridge that are
# labels of one conditional model share one network.
_LOADED: dict[tuple, tuple[Diffusion, ckpt.RunConfig]] = {}


@dataclass(frozen=True)
class DomainModel:
    """A domain's trained model: the domain's name, its diffusion (bound to the domain's label when it is one of a
    conditional model's), the run config and where it was found; maps the domain's data to and from model space."""

    name: str
    diffusion: Diffusion
    config: ckpt.RunConfig
    location: ModelLocation

    def __repr__(self) -> str:
        """One line for a REPL: the domain, format, data shape, schedule, label and path (not the network)."""
        ref = self.location.reference
        label, path = (self.location.label, self.location.path) if ref is None else (ref.label, ref.path)
        parts = [f"{self.location.format} {'×'.join(map(str, self.data_shape))}"]
        parts.append(external.describe_diffusion(self.diffusion.config))
        if label is not None:
            parts.append(f"label {label}")
        return f"DomainModel({self.name!r}: {', '.join(parts)}; {path})"

    @property
    def is_points(self) -> bool:
        return self.config.model.kind == "mlp"

    @property
    def where(self) -> str:
        return self.location.where

    @property
    def digits(self) -> str | None:
        """The colored-MNIST digit domain whose data the model learned (`fives` for the bundled fives-rgb), if any."""
        domain = self.config.domain
        if self.location.label is None and domain.get("kind") == "mnist" and isinstance(domain.get("digit"), int):
            return DIGIT_DOMAINS[domain["digit"]]
        return self.name if self.name in DIGIT_DOMAINS else None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.diffusion.data_shape)

    def to_model(self, raw) -> torch.Tensor:
        """Raw data → model space: uint8 images to [-1, 1]; 2-D points standardised with the recorded (mean, std)."""
        if self.is_points:
            mean, std = self.standardisation
            return torch.from_numpy(((np.asarray(raw, dtype=np.float64) - mean) / std).astype(np.float32))
        return to_unit_range(raw)

    def to_raw(self, x: torch.Tensor):
        """Model space → raw data: uint8 images, or 2-D points in the domain's coordinates (float64 numpy)."""
        if self.is_points:
            mean, std = self.standardisation
            return x.detach().cpu().double().numpy() * std + mean
        return to_uint8(x)

    @property
    def standardisation(self) -> tuple[float, float]:
        """(mean, std) of a point domain's training data: x_model = (x_raw − mean) / std."""
        mean, std = self.config.domain.get("mean"), self.config.domain.get("std")
        if not isinstance(mean, (int, float)) or not isinstance(std, (int, float)) or not std > 0:
            raise DDIBError(f"the {self.name} model's config.json records no valid standardisation (mean, std)")
        return float(mean), float(std)


def load_domain_model(
    domain: str,
    models_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    symmetry: str = "auto",
    guidance: float = 0.0,
    flags: str | dict | None = None,
) -> DomainModel:
    """A domain's model (bound to its label when it is one of a conditional model's); `symmetry` other than
    "auto" (the saved config's) overrides its group averaging; `guidance` is the classifier-free guidance scale;
    `flags` are a guided-diffusion checkpoint's (instead of the JSON beside it or those it was registered with)."""
    loc = find_model(domain, models_dir)
    if flags is not None:
        if loc.format != "guided-diffusion":
            raise DDIBError(f"flags are for guided-diffusion checkpoints; {domain} is a {loc.format} model")
        loc = replace(loc, reference=replace(loc.reference, flags=external.guided.given_flags(flags)))
    if loc.reference is not None:
        return _load_foreign(loc, device, symmetry, guidance)
    if guidance and loc.label is None:
        raise DDIBError(f"--guidance needs a label of a conditional model; {domain} is not one")
    if loc.label is None:
        model, cfg, _ = ckpt.load_model(loc.path, device)
    else:
        model, cfg = _shared_model(loc.path, device)
        model = model.with_label(cfg.domain["labels"].index(loc.label), guidance)
    if symmetry != "auto":
        model = model.use_symmetry(symmetry)
    return DomainModel(loc.domain, model, cfg, loc)


def _load_foreign(loc: ModelLocation, device, symmetry: str, guidance: float) -> DomainModel:
    """A foreign model (external.py) as a domain: bound to its label, with what ddib tuned for it."""
    ref = loc.reference
    if guidance:
        raise DDIBError(f"--guidance needs a model trained with an unconditional mode; {loc.domain} has none")
    stat = _weights_file(ref).stat()
    key = ("external", ref.path.resolve(), str(torch.device(device)), stat.st_mtime_ns, stat.st_size, repr(ref.flags))
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = (external.load_external(ref.path, ref.format, ref.flags, device), None)
    model = _LOADED[key][0]
    _check_foreign_label(loc, model.label_count, model.num_classes)
    model = model.with_label(ref.label) if ref.label is not None else model.derive()
    model.solver_grids, model.default_steps = ref.solver_grids, ref.default_steps
    model.quality_presets = ref.quality
    if symmetry != "auto":
        model = model.use_symmetry(symmetry)
    net = unwrap(model.net).config
    domain = {"name": loc.domain, "kind": "external", "format": ref.format, "path": str(ref.path)}
    cfg = ckpt.RunConfig(net, model.config, ckpt.TrainConfig(), domain)
    return DomainModel(loc.domain, model, cfg, loc)


def foreign_summary(loc: ModelLocation) -> external.ExternalSummary:
    """A foreign model's shape, classes and schedule from its configs alone, its label checked as loading it would
    (for listings: no weights are read)."""
    summary = external.describe_external(loc.reference.path, loc.reference.format, loc.reference.flags)
    _check_foreign_label(loc, summary.label_count, summary.config.num_classes)
    return summary


def _check_foreign_label(loc: ModelLocation, label_count: int, num_classes: int) -> None:
    """A label names one of the model's (or its classifier's) classes; a class-conditional network needs one."""
    ref = loc.reference
    if ref.label is not None:
        if not label_count:
            raise DDIBError(f"{ref.path} is not class-conditional, so it has no label {ref.label}")
        if not 0 <= ref.label < label_count:
            raise DDIBError(f"{ref.path} has {label_count} classes (0 to {label_count - 1}): no label {ref.label}")
    elif num_classes:
        raise DDIBError(f"{loc.domain} is class-conditional ({num_classes} classes): name one, e.g. "
                        f"{loc.path}:0 or `ddib models add NAME {ref.path} --label 0`")  # fmt: skip


def _weights_file(ref: Reference) -> Path:
    """The file whose change means the foreign model must be read again."""
    if ref.path.is_file():
        return ref.path
    if not ref.path.exists():
        raise external.not_found(str(ref.path))
    from .external.diffusers_folder import parts, weights

    unet, _ = parts(ref.path)
    return weights(unet)[0]


def _shared_model(path: Path, device: torch.device | str) -> tuple[Diffusion, ckpt.RunConfig]:
    """A conditional model's network, loaded once for all of its labels (reloaded when the weights change)."""
    stat = (path / ckpt.WEIGHTS_FILE).stat()
    key = (path.resolve(), str(torch.device(device)), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        _LOADED.clear()
        model, cfg, _ = ckpt.load_model(path, device)
        _LOADED[key] = (model, cfg)
    return _LOADED[key]


def describe_bridge(source: str, src: ModelLocation, target: str, tgt: ModelLocation) -> str:
    """'fives (local) → sevens (bundled)', or 'fives → sevens (both digits: conditional, local)' for one model."""
    if src.label is not None and tgt.label is not None and src.path.resolve() == tgt.path.resolve():
        return f"{source} → {target} (both {src.where})"
    return f"{source} ({src.where}) → {target} ({tgt.where})"


def _identity(loc: ModelLocation) -> tuple:
    """What makes two locations one model: the same files and the same label."""
    return loc.path.resolve(), loc.label, None if loc.reference is None else loc.reference.label


def data_name(loc: ModelLocation) -> str:
    """The name of the data a model learned: its config's domain (`fives` for the bundled fives-rgb), else its own."""
    if loc.reference is not None or loc.label is not None:
        return loc.domain
    try:
        return str(ckpt.read_config(loc.path)[0].domain.get("name") or loc.domain)
    except DDIBError:
        return loc.domain


def domain_models(models_dir: str | Path | None = None) -> list[ModelLocation]:
    """The available models that stand for their domains, as commands that weigh every domain use them: not
    conditional models as a whole, nor alternate models of a domain that has its own (fives-rgb beside fives),
    which are used where named."""
    found = [m for m in available_models(models_dir) if not m.is_union]
    names = {m.domain for m in found}
    return [m for m in found if data_name(m) == m.domain or data_name(m) not in names]


def source_candidates(target: ModelLocation, source: str | None, models_dir: str | Path | None = None) -> list[str]:
    """--from alone, else every domain model (domain_models) but the target and other models of its data (the
    caller infers among several)."""
    if source is not None:
        src = find_model(source, models_dir)
        if _identity(src) == _identity(target):
            raise DDIBError(f"--from and --to are both {target.domain!r}; translate between two different models")
        return [source]
    own = data_name(target)
    others = [m.domain for m in domain_models(models_dir) if m.domain != target.domain and data_name(m) != own]
    if not others:
        raise DDIBError(f"no trained domain besides {target.domain} to translate from; train one with `ddib train`")
    return others
