"""Choosing the quality presets from a `ddib bench quality` table, as a pure function of its rows.

- **fast**: the fewest NFE per direction among the measured solves (the reference aside) whose every quality
  figure of RULE_FIGURES has its value inside the converged translation's 95% interval; a tie goes to the solve
  closer to the converged translation (median image).
- **exact**: the fewest NFE whose median image is within EXACT_LEVELS of the converged translation, the reference
  itself (distance 0) included where it is a fixed-step solve of the table's solver.
- **default**: today's default (the solve the models use without --steps or --quality) where it still earns its
  place, else the fast one. It earns it where the fast one does not exist, where it is the fast one, where quality
  cannot tell the two apart and it is the cheaper, or where some figure's 95% intervals of the two lie apart
  with today's the better and none with it the worse. Where quality cannot tell them apart (every figure's
  intervals overlap), the default is the cheaper; where today's is apart and worse on some figure, the fast one.

The cycle's RMS is left out of RULE_FIGURES: the converged map is exactly invertible, so it measures how closely a
solve follows the converged map (what `exact` is for), not what a user sees of a translation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..bridge.presets import Preset
from ..evaluation.figures import HIGHER_IS_BETTER, TITLES
from .quality import LEARNED, REFERENCE, QualityRow

RULE_FIGURES = ("read_as_target", "hue_error_median", "hue_error_p90", "cycle_read_as_source", "frechet_distance")
EXACT_LEVELS = 0.1


@dataclass(frozen=True)
class Choice:
    """The rows chosen as each preset (None where none qualifies), and why the default is what it is."""

    fast: QualityRow | None
    default: QualityRow | None
    exact: QualityRow | None
    why: str

    def presets(self) -> dict[str, Preset | None]:
        return {"fast": preset_of(self.fast), "default": preset_of(self.default), "exact": preset_of(self.exact)}


def preset_of(row: QualityRow | None) -> Preset | None:
    return None if row is None or row.steps is None else Preset(row.steps, row.grid == LEARNED)


def outside(row: QualityRow, reference: QualityRow) -> list[str]:
    """The figures whose value for `row` lies outside the reference's interval (those both measured)."""
    out = []
    for name in RULE_FIGURES:
        mine, ref = row.figures.get(name), reference.figures.get(name)
        if mine is not None and ref is not None and not ref.contains(mine.value):
            out.append(name)
    return out


def apart(a: QualityRow, b: QualityRow) -> list[str]:
    """The figures whose 95% intervals for a and b do not overlap: where quality tells them apart."""
    found = [(a.figures.get(n), b.figures.get(n), n) for n in RULE_FIGURES]
    return [n for x, y, n in found if x is not None and y is not None and not x.overlaps(y)]


def better(a: QualityRow, b: QualityRow, name: str) -> bool:
    """Whether a's value of the figure is better than b's (higher for shares read right, lower otherwise)."""
    x, y = a.figures[name].value, b.figures[name].value
    return x > y if name in HIGHER_IS_BETTER else x < y


def _cost(row: QualityRow) -> tuple[float, float]:
    return row.nfe, row.median_image if row.median_image is not None else float("inf")


def _names(figures: list[str]) -> str:
    return ", ".join(TITLES[f] for f in figures)


def choose(rows: list[QualityRow], reference: QualityRow, today: QualityRow | None) -> Choice:
    """The presets of a table (module docstring): `rows` the measured solves, `reference` the converged one,
    `today` the models' default solve among the rows."""
    measured = [r for r in rows if r.missing is None and r.grid != REFERENCE]
    inside = [r for r in measured if not outside(r, reference)]
    fast = min(inside, key=_cost, default=None)
    exact_pool = measured + ([reference] if reference.steps is not None and reference.solver == _solver(rows) else [])
    close = [r for r in exact_pool if r.median_image is not None and r.median_image <= EXACT_LEVELS]
    exact = min(close, key=_cost, default=None)
    default, why = _default(fast, today)
    return Choice(fast, default, exact, why)


def _solver(rows: list[QualityRow]) -> str | None:
    return rows[0].solver if rows else None


def _default(fast: QualityRow | None, today: QualityRow | None) -> tuple[QualityRow | None, str]:
    if today is None:
        return fast, "no default solve of the models was measured; the default is the fast one"
    if fast is None:
        return today, (
            f"no measured solve has every quality figure inside the converged translation's intervals, so the "
            f"default stays today's, {today.label}"
        )
    if fast.key == today.key:
        return today, (
            f"today's default, {today.label}, is itself the fewest-NFE solve whose quality figures all lie inside "
            "the converged translation's intervals"
        )
    differ = apart(today, fast)
    if not differ:
        cheaper = today if today.nfe < fast.nfe else fast
        return cheaper, (
            f"quality cannot tell today's default, {today.label}, from the fast {fast.label} apart (every figure's "
            f"95% intervals overlap), so the default is the cheaper: {cheaper.label} ({cheaper.nfe:g} NFE per "
            f"direction against {max(today.nfe, fast.nfe):g})"
        )
    wins = [n for n in differ if better(today, fast, n)]
    losses = [n for n in differ if n not in wins]
    if not losses:
        return today, (
            f"today's default, {today.label}, earns its place: its 95% intervals lie apart from the fast "
            f"{fast.label}'s, and better, on {_names(wins)}"
        )
    return fast, (
        f"today's default, {today.label}, is worse than the fast {fast.label} on {_names(losses)} (95% intervals "
        f"apart), and the fast one's quality figures all lie inside the converged translation's intervals"
    )
