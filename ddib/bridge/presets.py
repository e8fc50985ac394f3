"""Quality presets: the solves `ddib bench quality` chose by translation quality (the curve of quality against
NFE, docs/solvers.md), kept per model and solver in its config.json (or a registered model's reference.json) under
"quality", keyed by `Diffusion.solver_key`:

    "quality": {"unipc": {"fast": {"steps": 10, "tuned": false}, "default": {"steps": 18, "tuned": true},
                          "exact": {"steps": 40, "tuned": false}, "bridge": "fives → sevens", "images": 892,
                          "why": "…"}}

`fast` is the fewest NFE whose quality figures lie inside the converged translation's intervals, `default` what
a solve uses when no preset is named, `exact` the fewest NFE whose median image is within 0.1 level of the
converged translation. `tuned` solves on the model's tuned grid for that step count (`tuned.stored`), otherwise
on the solver's own grid. Only the three presets are read; every other key records where they came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DDIBError
from ..model.diffusion import Diffusion

FAST, DEFAULT, EXACT = "fast", "default", "exact"
QUALITIES = (FAST, DEFAULT, EXACT)
HOW_TO_STORE = "ddib bench quality --from SOURCE --to TARGET --save-presets"


@dataclass(frozen=True)
class Preset:
    """One stored solve: a step count, on the model's tuned grid for it or on the solver's own grid."""

    steps: int
    tuned: bool

    def to_json(self) -> dict[str, Any]:
        return {"steps": self.steps, "tuned": self.tuned}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Preset:
        steps, tuned = (raw.get("steps"), raw.get("tuned")) if isinstance(raw, dict) else (None, None)
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1 and isinstance(tuned, bool)):
            raise DDIBError(f'the quality preset {where} is malformed: give {{"steps": N, "tuned": true|false}}')
        return cls(steps, tuned)


def check_quality(name: str) -> None:
    if name not in QUALITIES:
        raise DDIBError(f"--quality {name!r}: choose one of {', '.join(QUALITIES)}")


def stored(model: Diffusion, solver: str) -> dict[str, Preset]:
    """The presets `model` keeps for `solver` (by name; empty where it keeps none); a malformed one is a DDIBError."""
    key = model.solver_key(solver)
    entry = model.quality_presets.get(key)
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise DDIBError(f"the quality presets of {key} are malformed: expected an object of fast, default, exact")
    return {name: Preset.from_json(entry[name], f"{key}.{name}") for name in QUALITIES if name in entry}


def combine(presets: Sequence[Preset]) -> Preset:
    """One solve for every end of a bridge: the most steps any end asks for, on tuned grids only where every end
    asking for that many does (a bridge solves both directions at one step count)."""
    steps = max(p.steps for p in presets)
    return Preset(steps, all(p.tuned for p in presets if p.steps == steps))


def bridge_preset(quality: str, solver: str, models: Sequence[Diffusion],
                  fallback: Callable[[Diffusion], int]) -> Preset | None:  # fmt: skip
    """The solve `quality` names for a solve through `models`: each model's stored preset combined (`combine`).
    `default` falls back, model by model, to `fallback(model)` steps on its tuned grid (the rule before presets),
    and is None where no model stores one; `fast` and `exact` must be stored by every model."""
    check_quality(quality)
    found = [stored(m, solver).get(quality) for m in models]
    if quality == DEFAULT:
        if all(p is None for p in found):
            return None
        return combine([p or Preset(fallback(m), True) for p, m in zip(found, models, strict=True)])
    if not models or any(p is None for p in found):
        which = "the models store" if len(models) > 1 else "the model stores"
        raise DDIBError(
            f"--quality {quality}: {which} no {quality} preset for {solver}; measure and store them with "
            f"`{HOW_TO_STORE}`, or give --steps"
        )
    return combine(found)


def presets_json(chosen: dict[str, Preset | None], **about: Any) -> dict[str, Any]:
    """A model's "quality" entry for one solver: the presets chosen (those that are None left out) and, beside
    them, what they were chosen on (`about`: the bridge, the images, why the default is what it is)."""
    out: dict[str, Any] = {name: p.to_json() for name in QUALITIES if (p := chosen.get(name)) is not None}
    return out | {key: value for key, value in about.items() if value is not None}
