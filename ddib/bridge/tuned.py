"""A model's tuned solves, as its config.json (or a registered model's reference.json) keeps them: under
"solver_grids", by `Diffusion.grid_key` (solver × steps), per direction the σ̄ nodes, the per-step corrections
where they were kept, and what tuning measured (`ddib tune-solver`, `tuning`).

The JSON entry:

    {"encode": [σ̄_0, …, σ̄_N], "decode": […], "encode_corrections": [[c, …], …], "decode_corrections": […],
     "reference": "dopri5 (rtol=1e-06, atol=1e-06)", "images": {"tune": 32, "validation": 32, "noise": 32},
     "errors": {"encode": {"kept": "tuned", "tune_default": …, …, "unit": "latent RMS"}, "decode": {…}}}

Only the nodes are needed to solve; every other key may be absent.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import DDIBError
from ..model.diffusion import Diffusion

DIRECTIONS = ("encode", "decode")


@dataclass(frozen=True)
class TuningErrors:
    """What tuning one direction measured: the error of the grid it started from and of the tuned solve, on the
    tuning and on the validation data, in `unit`, against the converged solve `reference`; which it kept."""

    kept: str  # "tuned" | "default" (tuning did not lower the validation error)
    tune_default: float
    tune_tuned: float
    val_default: float
    val_tuned: float
    reference: str
    unit: str
    method: str | None = None  # "gradient" for a gradient fit; a search leaves it out
    evaluations: int | None = None  # a search's error evaluations
    iterations: int | None = None  # a gradient fit's steps, and the one whose parameters it kept
    best_iteration: int | None = None
    tune_corrected: float | None = None  # a search's least-squares corrections on the kept grid, and whether kept
    val_corrected: float | None = None
    corrections: str | None = None  # "kept" | "dropped"
    bridge: str | None = None  # "source → target" when tuned for one bridge

    # The order the keys are written in.
    KEYS = ("method", "kept", "tune_default", "tune_tuned", "val_default", "val_tuned", "evaluations",
            "iterations", "best_iteration", "tune_corrected", "val_corrected", "corrections", "reference", "unit",
            "bridge")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS if getattr(self, key) is not None}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TuningErrors:
        return cls(**raw)


@dataclass(frozen=True)
class TunedDirection:
    """One direction's tuned solve: increasing σ̄ nodes and, where kept, per-step corrections (in solve order)."""

    grid: tuple[float, ...]
    corrections: tuple[tuple[float, ...], ...] | None = None
    errors: TuningErrors | None = None

    @classmethod
    def of(cls, grid, corrections=None, errors: TuningErrors | None = None) -> TunedDirection:
        """From a solve's nodes and corrections as plain lists (or any sequences of numbers)."""
        steps = None if corrections is None else tuple(tuple(float(c) for c in step) for step in corrections)
        return cls(tuple(float(v) for v in grid), steps, errors)


@dataclass(frozen=True)
class ImageCounts:
    """The data a solve was tuned on: images to tune, images to validate, N(0, I) latents of each."""

    tune: int
    validation: int
    noise: int


@dataclass(frozen=True)
class TunedSolve:
    """One solver × steps entry of "solver_grids": a tuned encode and/or decode, and what they were tuned against."""

    encode: TunedDirection | None = None
    decode: TunedDirection | None = None
    reference: str | None = None  # the converged solve (`ODEOptions.describe`)
    images: ImageCounts | None = None

    def direction(self, name: str) -> TunedDirection | None:
        if name not in DIRECTIONS:
            raise ValueError(f"a direction is one of {DIRECTIONS}, not {name!r}")
        return getattr(self, name)

    def for_bridge(self, bridge: str) -> TunedSolve:
        """The entry with each direction's errors marked as measured for the bridge "source → target"."""
        marked = {
            name: replace(part, errors=replace(part.errors, bridge=bridge))
            for name in DIRECTIONS
            if (part := self.direction(name)) is not None and part.errors is not None
        }
        return replace(self, **marked)

    def to_json(self) -> dict[str, Any]:
        parts = [(name, part) for name in DIRECTIONS if (part := self.direction(name)) is not None]
        out: dict[str, Any] = {name: list(part.grid) for name, part in parts}
        out |= {
            f"{name}_corrections": [list(c) for c in part.corrections]
            for name, part in parts
            if part.corrections is not None
        }
        if self.reference is not None:
            out["reference"] = self.reference
        if self.images is not None:
            out["images"] = {f.name: getattr(self.images, f.name) for f in fields(self.images)}
        errors = {name: part.errors.to_json() for name, part in parts if part.errors is not None}
        if errors:
            out["errors"] = errors
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TunedSolve:
        errors = raw.get("errors", {})
        parts = {}
        for name in DIRECTIONS:
            if name not in raw:
                if f"{name}_corrections" in raw or name in errors:
                    raise ValueError(f"{name} corrections or errors without {name} nodes")
                continue
            measured = None if name not in errors else TuningErrors.from_json(errors[name])
            parts[name] = TunedDirection.of(raw[name], raw.get(f"{name}_corrections"), measured)
        images = raw.get("images")
        return cls(**parts, reference=raw.get("reference"), images=None if images is None else ImageCounts(**images))


def merge_entry(old: TunedSolve | None, new: TunedSolve) -> TunedSolve:
    """`new`, with `old`'s directions where `new` tuned none (each direction's nodes, corrections and errors)."""
    if old is None:
        return new
    kept = {name: old.direction(name) for name in DIRECTIONS if new.direction(name) is None}
    return replace(new, **{name: part for name, part in kept.items() if part is not None})


def load_entry(raw: dict[str, Any], key: str) -> TunedSolve:
    """The "solver_grids" entry `key`, read; a malformed one is a DDIBError."""
    try:
        return TunedSolve.from_json(raw)
    except (TypeError, ValueError, AttributeError) as err:
        raise DDIBError(f"the tuned solve {key} in solver_grids is malformed: {err}") from None


def stored(model: Diffusion, solver: str, steps: int) -> TunedSolve | None:
    """The model's tuned solve for `solver` × `steps`, if it has one."""
    key = model.grid_key(solver, steps)
    raw = model.solver_grids.get(key)
    return None if raw is None else load_entry(raw, key)
