"""Translation quality against NFE (`ddib bench quality`): for each solve of a bridge — the converged reference,
every step count on the solver's own grid and on the models' learned grids — the quality figures of `ddib
evaluate` with 95% bootstrap intervals (`evaluation.figures`) and the distance to the converged translation.

Rows are kept in a JSON file as each is measured, with a fingerprint of what they were measured on (the source
images, both models' weights and configs, the reference, the resamples; a learned row also the entries it solved
with), so that a cut run resumes: a row measured on the same fingerprint is read back, not measured again.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..bridge import ode, pipeline
from ..bridge.grids import grid_name
from ..bridge.tuned import stored
from ..errors import DDIBError
from ..evaluation.bootstrap import Estimate
from ..evaluation.classifier import DigitClassifier, extract_features
from ..evaluation.figures import FIGURES, HIGHER_IS_BETTER, TITLES, figures, per_image
from ..io.atomic import atomic_write
from ..model.diffusion import Diffusion
from .translate import per_image_rms

FORMAT, VERSION = "ddib-bench-quality", 1
UNTUNED, LEARNED, REFERENCE = "untuned", "learned", "reference"
GRIDS = (UNTUNED, LEARNED)
STEPS = (6, 8, 10, 12, 14, 16, 18, 24, 32, 40)


@dataclass(frozen=True)
class QualityRow:
    """One solve of the bridge: its quality figures (value and 95% interval), its distance to the converged
    translation in 8-bit levels (median image, share of images over one level, batch RMS), its cost."""

    label: str
    solver: str
    steps: int | None  # None: an adaptive reference
    grid: str  # UNTUNED | LEARNED | REFERENCE
    nfe: float = 0.0  # network evaluations per image and direction
    n: int = 0
    figures: dict[str, Estimate | None] = field(default_factory=dict)
    median_image: float | None = None
    over_one_level: float | None = None
    batch_rms: float | None = None
    images_per_s: float | None = None
    today: bool = False  # the solve the models use without --steps or --quality
    missing: str | None = None  # why it was not measured (a learned row the models hold no entries for)
    fingerprint: str = ""  # what a learned row solved with beyond the table's own fingerprint

    @property
    def key(self) -> tuple[str, int | None]:
        return self.grid, self.steps

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("label", "solver", "steps", "grid", "nfe", "n")}
        out["figures"] = {k: None if v is None else v.to_json() for k, v in self.figures.items()}
        keys = ("median_image", "over_one_level", "batch_rms", "images_per_s", "today", "missing", "fingerprint")
        return out | {k: getattr(self, k) for k in keys}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QualityRow:
        found = {k: Estimate.from_json(v) for k, v in raw.get("figures", {}).items()}
        return cls(**{**raw, "figures": found})


def options_of(solver: str, steps: int, grid: str) -> ode.ODEOptions:
    """The solve of a row: `steps` on the models' learned grids, or on the solver's own."""
    return ode.ODEOptions(solver, steps=steps, tuned=grid == LEARNED)


def own_grid(solver: str) -> str:
    """The name of a solver's own grid ('log-SNR uniform grid')."""
    return f"{grid_name(ode.ODEOptions(solver).rho)} grid"


def label_of(solver: str, steps: int, grid: str) -> str:
    return f"{solver} × {steps}, {'learned' if grid == LEARNED else own_grid(solver)}"


def today(src: Diffusion, tgt: Diffusion, solver: str) -> tuple[int, str]:
    """(steps, grid) of the solve the models use without --steps or --quality (their default preset, else their
    default step count on its tuned grid)."""
    options = ode.resolve_steps(ode.ODEOptions(solver), src, tgt)
    return options.steps, LEARNED if options.tuned and ode.uses_tuned_grid(options, src, tgt) else UNTUNED


def learned_missing(src: Diffusion, tgt: Diffusion, solver: str, steps: int, names: tuple[str, str]) -> str | None:
    """Why the bridge src → tgt (called `names`) has no learned solve at this step count (its source's encode, its
    target's decode), if it has none."""
    src, tgt = ode.bridge_ends(src, tgt)
    for model, name, direction in ((src, names[0], "encode"), (tgt, names[1], "decode")):
        entry = stored(model, solver, steps)
        if entry is None or entry.direction(direction) is None:
            return f"no learned {direction} of {name} for {solver} × {steps}"
    return None


def learned_fingerprint(src: Diffusion, tgt: Diffusion, solver: str, steps: int) -> str:
    """The learned entries a row at this step count solves with, both ways: a refit makes the row stale."""
    entries = [m.solver_grids.get(m.grid_key(solver, steps)) for m in (src, tgt)]
    return digest(json.dumps(entries, sort_keys=True))


def digest(*parts: Any) -> str:
    """SHA-256 of strings, JSON-able values and tensors, in order."""
    h = hashlib.sha256()
    for part in parts:
        if torch.is_tensor(part):
            h.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update((part if isinstance(part, str) else json.dumps(part, sort_keys=True, default=str)).encode())
        h.update(b"\0")
    return h.hexdigest()


def state_digest(net: torch.nn.Module) -> str:
    """A network's weights, in name order."""
    state = net.state_dict()
    return digest(*(state[k] for k in sorted(state)))


def model_digest(model: Diffusion) -> str:
    """A model's weights and config (its symmetry included), as what a translation depends on."""
    return digest(repr(model.config), model.label, state_digest(model.net))


@dataclass
class Bridge:
    """What every row translates with: the domains the figures read (the digit domain a model learned, e.g. `fives`
    for fives-rgb, else its name), the two models, the source images, the classifier and real targets' features
    (None where the domains are not digits; FD compares against their features), the batch size, the bootstrap's
    resamples and seed."""

    source: str
    target: str
    src: Diffusion
    tgt: Diffusion
    x: torch.Tensor
    classifier: DigitClassifier | None
    real_images: torch.Tensor | None
    batch_size: int | None = None
    resamples: int = 1000
    seed: int = 0
    real_features: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.real_images is not None and self.classifier is not None:
            self.real_features = extract_features(self.classifier, self.real_images)

    def translate(self, options: ode.ODEOptions, x: torch.Tensor, back: bool = False,
                  stats: ode.SolveStats | None = None, done: Callable[[int], None] | None = None,
                  ) -> torch.Tensor:  # fmt: skip
        """x translated source → target (target → source with `back`), batch by batch, on the CPU; done(k) with
        the images finished so far."""
        a, b = (self.tgt, self.src) if back else (self.src, self.tgt)
        hook = None if done is None else (lambda p: done(p.done))
        return pipeline.collect(pipeline.translate_batches(a, b, x, options, self.batch_size, hook, stats))[1]

    def warm_up(self) -> None:
        """One small translation first: one-time costs (kernels, allocations) must not count against a row."""
        self.translate(ode.ODEOptions(steps=1, tuned=False), self.x[:1])

    def measure(self, options: ode.ODEOptions, label: str, grid: str, reference: torch.Tensor | None,
                done: Callable[[int], None] | None = None) -> tuple[QualityRow, torch.Tensor]:  # fmt: skip
        """A row for one solve, and its translations: translated and back at the same solve, scored, and compared
        image by image with the reference translation (None: the row is the reference); done(k) counts the
        images translated either way."""
        n = len(self.x)
        behind = None if done is None else (lambda k: done(n + k))
        stats = ode.SolveStats()
        t0 = time.perf_counter()
        y = self.translate(options, self.x, stats=stats, done=done)
        rate = n / (time.perf_counter() - t0)
        cycled = self.translate(options, y, back=True, done=behind)
        scores = per_image(self.x, y, cycled, self.source, self.target, self.classifier)
        found = figures(scores, self.real_features, self.resamples, self.seed)
        distance = per_image_rms(y, y if reference is None else reference)
        row = QualityRow(label, options.solver, options.steps if options.is_fixed else None, grid,
                         sum(stats.per_solve) / len(stats.per_solve), n, found, distance.median().item(),
                         (distance > 1.0).double().mean().item(), distance.square().mean().sqrt().item(),
                         rate)  # fmt: skip
        return row, y

    def fingerprint(self, reference: ode.ODEOptions, solver: str) -> str:
        """What every row's numbers depend on besides its own solve: inputs and weights, never computed features,
        whose last bits change with the CPU thread count."""
        reals = self.real_images if self.real_images is not None else "no FD"
        judge = "no classifier" if self.classifier is None else state_digest(self.classifier)
        return digest(self.source, self.target, solver, self.x, model_digest(self.src), model_digest(self.tgt),
                      reference.describe(), reference.tuned, self.resamples, self.seed, reals, judge)  # fmt: skip


class Store:
    """The JSON file of a table's rows, rewritten (atomically) after every row, and the reference translation
    beside it (`<name>-reference.safetensors`), which the distances of rows measured later need."""

    def __init__(self, path: Path, fingerprint: str, setting: dict[str, Any]):
        self.path, self.fingerprint, self.setting = Path(path), fingerprint, setting
        self.reference_file = self.path.with_name(self.path.stem + "-reference.safetensors")
        self.rows: dict[tuple, QualityRow] = {}
        self.reference: QualityRow | None = None
        self.note = self._load()

    def _load(self) -> str | None:
        """Read the earlier rows if they were measured on this fingerprint; say why not where there are some."""
        if not self.path.is_file():
            return None
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return f"{self.path} is unreadable: measuring every row anew"
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("version") != VERSION:
            raise DDIBError(f"{self.path} is not a `ddib bench quality` table; give another --out-dir")
        if raw.get("fingerprint") != self.fingerprint:
            return f"{self.path} was measured on other images, models or reference: measuring every row anew"
        try:
            rows = [QualityRow.from_json(r) for r in raw.get("rows", [])]
            reference = None if raw.get("reference") is None else QualityRow.from_json(raw["reference"])
        except (TypeError, ValueError):
            return f"{self.path} holds malformed rows: measuring every row anew"
        self.rows = {r.key: r for r in rows}
        if reference is not None and self.reference_file.is_file():
            self.reference = reference
        return None

    def reference_translation(self) -> torch.Tensor | None:
        """The stored reference translation, where it was made on this fingerprint."""
        from safetensors import SafetensorError, safe_open

        if self.reference is None or not self.reference_file.is_file():
            return None
        try:
            with safe_open(str(self.reference_file), "pt") as f:
                if (f.metadata() or {}).get("fingerprint") != self.fingerprint:
                    return None
                return f.get_tensor("translation")
        except (OSError, SafetensorError):
            return None

    def keep_reference(self, row: QualityRow, translation: torch.Tensor) -> None:
        from safetensors.torch import save

        data = save({"translation": translation.contiguous()}, {"fingerprint": self.fingerprint})
        atomic_write(self.reference_file, lambda f: f.write(data))
        self.reference = row
        self.save()

    def keep(self, row: QualityRow) -> None:
        self.rows[row.key] = row
        self.save()

    def reusable(self, key: tuple, fingerprint: str = "") -> QualityRow | None:
        row = self.rows.get(key)
        return row if row is not None and row.missing is None and row.fingerprint == fingerprint else None

    def save(self, extra: dict[str, Any] | None = None) -> None:
        raw = {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint, "setting": self.setting,
               "reference": None if self.reference is None else self.reference.to_json(),
               "rows": [r.to_json() for r in self.rows.values()], **(extra or {})}  # fmt: skip
        text = json.dumps(raw, indent=1, ensure_ascii=False) + "\n"
        atomic_write(self.path, lambda f: f.write(text.encode()))


def settings(steps: list[int], grids: list[str], solver: str, today_row: tuple[int, str]) -> list[tuple[int, str]]:
    """(steps, grid) of every row, in table order: each step count on each grid, and the models' default solve
    where the list leaves it out."""
    rows = [(k, g) for k in sorted(set(steps)) for g in grids]
    if today_row not in rows:
        rows.append(today_row)
        rows.sort(key=lambda r: (r[0], GRIDS.index(r[1])))
    return rows


def cell(estimate: Estimate | None, name: str) -> str:
    """'98.4% (97.5–99.1)' for a share, '9.44 (8.91–10.1)' otherwise; 'n/a' where not measured."""
    if estimate is None:
        return "n/a"
    if name in HIGHER_IS_BETTER:
        return f"{100 * estimate.value:.1f}% ({100 * estimate.low:.1f}–{100 * estimate.high:.1f})"
    return f"{estimate.value:.3g} ({estimate.low:.3g}–{estimate.high:.3g})"


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def to_markdown(rows: list[QualityRow], marks: dict[tuple, str]) -> str:
    """The table: one line per row, its quality figures with intervals, its distance to the converged translation;
    `marks` names the presets a row was chosen as."""
    head = ["solve", "NFE per direction", *(TITLES[f] for f in FIGURES), "to converged: median image",
            "images > 1 level", "batch RMS", "images/s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = r.label + (" (today's default)" if r.today else "") + (f" **{marks[r.key]}**" if r.key in marks else "")
        if r.missing is not None:
            lines.append("| " + " | ".join([name, f"missing: {r.missing}", *[""] * (len(head) - 2)]) + " |")
            continue
        over = "n/a" if r.over_one_level is None else f"{100 * r.over_one_level:.0f}%"
        cells = [name, _num(r.nfe, ".4g"), *(cell(r.figures.get(f), f) for f in FIGURES), _num(r.median_image),
                 over, _num(r.batch_rms), _num(r.images_per_s)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[QualityRow]) -> str:
    """Every number of the table, each figure as value, low and high columns."""
    import csv
    import io

    columns = ["label", "solver", "steps", "grid", "today", "missing", "nfe", "n"]
    columns += [f"{f}{part}" for f in FIGURES for part in ("", "_low", "_high")]
    columns += ["median_image", "over_one_level", "batch_rms", "images_per_s"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        out = {k: getattr(r, k) for k in columns if hasattr(r, k)}
        for f in FIGURES:
            est = r.figures.get(f)
            out |= dict(zip((f, f"{f}_low", f"{f}_high"), est.to_json() if est else ("", "", ""), strict=True))
        writer.writerow(out)
    return buf.getvalue()


def chart(rows: list[QualityRow], reference: QualityRow, title: str):
    """One panel per quality figure (value and 95% interval against NFE per direction, one line per grid, the
    converged translation's interval as a band) and one of the distance to the converged translation."""
    from ..io.charts import line_chart, tile

    measured = [r for r in rows if r.missing is None and r.grid != REFERENCE]
    panels = []
    for name in FIGURES:
        series, bars = {}, {}
        for r in measured:
            est = r.figures.get(name)
            if est is not None:
                series.setdefault(r.grid, []).append((r.nfe, est.value))
                bars.setdefault(r.grid, []).append((r.nfe, est.low, est.high))
        ref = reference.figures.get(name)
        band = None if ref is None else (ref.low, ref.high, "converged")
        if series:
            panels.append(line_chart(series, TITLES[name], "NFE per direction", "", (480, 320), xlog=False,
                                     ylog=False, intervals=bars, band=band))  # fmt: skip
    distance = {f"{r.grid}, {what}": [] for r in measured for what in ("median image", "batch RMS")}
    for r in measured:
        distance[f"{r.grid}, median image"].append((r.nfe, max(r.median_image or 0.0, 1e-3)))
        distance[f"{r.grid}, batch RMS"].append((r.nfe, max(r.batch_rms or 0.0, 1e-3)))
    panels.append(line_chart(distance, "to the converged translation (levels)", "NFE per direction", "",
                             (480, 320), hline=(1.0, "1 level"), xlog=True, ylog=True))  # fmt: skip
    return tile(panels, columns=4, title=title)


def with_marks(rows: list[QualityRow], chosen: dict[str, QualityRow | None]) -> dict[tuple, str]:
    """Row key → the presets it was chosen as ('fast, default')."""
    marks: dict[tuple, list[str]] = {}
    for name, row in chosen.items():
        if row is not None:
            marks.setdefault(row.key, []).append(name)
    return {key: ", ".join(names) for key, names in marks.items()}
