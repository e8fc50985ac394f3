"""`ddib bench quality`: translation quality against NFE with 95% intervals, the presets it implies
(`bench.preset_rule`), and with --save-presets those presets in both models' configs."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Optional

import torch
import typer

from ..bench import quality as bench_quality
from ..bench import translate as bench
from ..bench.preset_rule import EXACT_LEVELS, RULE_FIGURES, Choice, choose
from ..bridge import ode
from ..bridge.presets import presets_json
from ..data import data_dir_or_default
from ..data.colored_mnist import DIGIT_DOMAINS
from ..data.inputs import held_out_digits, source_images
from ..errors import DDIBError
from ..evaluation.bootstrap import RESAMPLES
from ..evaluation.classifier import load_classifier
from ..evaluation.figures import TITLES
from ..io.atomic import atomic_write
from ..io.images import save_png
from ..model import checkpoint as ckpt
from ..model.registry import load_domain_model
from ..model.speed import accelerate_for
from ..utils import resolve_device
from .app import console
from .bench_cmd import _device_name, _int_list, bench_app
from .options import DataDirOpt, DeviceOpt, ModelsDirOpt, SymmetryOpt
from .progress import bar
from .tune_cmd import settings_of, writable_model


@bench_app.command("quality")
def bench_quality_command(
    source: str = typer.Option("fives", "--from"),
    target: str = typer.Option("sevens", "--to"),
    n: int = typer.Option(1000, "-n", "--num", min=2, help="Held-out source images (1000: all 892 held-out fives)"),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out subset and of the bootstrap's resamples"),
    inputs: Optional[list[Path]] = typer.Option(None, "--inputs", help="Source images instead of held-out digits"),
    steps_list: str = typer.Option(
        ",".join(map(str, bench_quality.STEPS)), "--steps-list", help="Step counts per direction, comma-separated"
    ),
    grids: str = typer.Option(
        "untuned,learned",
        "--grids",
        help="untuned (the solver's own grid), learned (the models' tuned grids; a step count they hold none for "
        "is reported missing), or both, comma-separated",
    ),
    solver: str = typer.Option(ode.DEFAULT_SOLVER, "--solver", help="Fixed-step solver of every row"),
    reference_spec: str = typer.Option(
        "unipc:200", "--reference", help="The converged translation: SOLVER:STEPS or SOLVER:TOL (adaptive)"
    ),
    resamples: int = typer.Option(RESAMPLES, "--resamples", min=10, help="Bootstrap resamples of the images"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per solve [default: auto]"),
    save_presets: bool = typer.Option(
        False, "--save-presets", help="Store the chosen fast, default and exact presets in both models' configs"
    ),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    data_dir: Optional[str] = DataDirOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where to write [default: bench/quality-FROM-TO]"),
) -> None:
    """Quality against NFE: each step count on the solver's own and the learned grids, read as target, hue, cycle,
    FD with 95% intervals, distance to the converged translation; picks the fast, default and exact presets."""
    counts = _int_list(steps_list, "--steps-list")
    chosen_grids = [g.strip() for g in grids.split(",") if g.strip()]
    if not chosen_grids or any(g not in bench_quality.GRIDS for g in chosen_grids):
        raise DDIBError(f"--grids {grids!r}: give {' and/or '.join(bench_quality.GRIDS)}, comma-separated")
    if not ode.ODEOptions(solver).is_fixed:
        raise DDIBError(f"--solver {solver} is adaptive; the table's rows are fixed-step solves")
    reference = dataclasses.replace(bench.parse_reference(reference_spec), tuned=False)
    dev = resolve_device(device)
    writable = [writable_model(m, models_dir, dev, "measure") for m in (source, target)] if save_presets else []
    src_dm, tgt_dm = (load_domain_model(m, models_dir, dev, symmetry) for m in (source, target))
    if (src_dm.location.path.resolve(), src_dm.location.label) == (tgt_dm.location.path.resolve(),
                                                                    tgt_dm.location.label):  # fmt: skip
        raise DDIBError(f"--from and --to are the same model ({src_dm.location.path})")
    source, target = src_dm.location.domain, tgt_dm.location.domain
    src_digits, tgt_digits = src_dm.digits or source, tgt_dm.digits or target
    src, tgt = accelerate_for(src_dm.diffusion, dev), accelerate_for(tgt_dm.diffusion, dev)
    data_dir = data_dir_or_default(data_dir)
    x = source_images(src_digits, src, n, files=inputs, seed=seed, data_dir=data_dir).x
    digits = tgt_digits in DIGIT_DOMAINS
    classifier = load_classifier(device=dev) if digits or src_digits in DIGIT_DOMAINS else None
    reals = held_out_digits(data_dir, tgt_digits, 10_000, seed) if classifier is not None and digits else None
    run = bench_quality.Bridge(src_digits, tgt_digits, src, tgt, x, classifier, reals, batch_size, resamples, seed)
    out_dir = out_dir or Path("bench") / f"quality-{_slug(source)}-{_slug(target)}"
    command = _command(source, target, n, seed, inputs, steps_list, grids, solver, reference_spec, resamples,
                       symmetry, models_dir, out_dir)  # fmt: skip
    setting = {"command": command, "source": source, "target": target, "images": len(x), "solver": solver,
               "reference": reference.describe(), "resamples": resamples, "seed": seed}  # fmt: skip
    store = bench_quality.Store(out_dir / f"quality-{dev.type}.json", run.fingerprint(reference, solver), setting)
    if store.note:
        console.print(store.note)
    run.warm_up()

    ref_translation = store.reference_translation()
    if ref_translation is None:
        label = f"converged: {reference.describe()}"
        try:
            ref_row, ref_translation = _measured(run, reference, label, bench_quality.REFERENCE, None)
        except DDIBError as err:
            raise DDIBError(f"reference solve: {err} (--reference unipc:200 is a fixed-step alternative)") from None
        store.keep_reference(ref_row, ref_translation)
    else:
        console.print(f"{store.reference.label}: read back from {store.path}")
    ref_row = store.reference

    today = bench_quality.today(src, tgt, solver)
    rows = []
    for steps, grid in bench_quality.settings(counts, chosen_grids, solver, today):
        label = bench_quality.label_of(solver, steps, grid)
        missing = back = None
        if grid == bench_quality.LEARNED:
            missing = bench_quality.learned_missing(src, tgt, solver, steps, (source, target))
            back = bench_quality.learned_missing(tgt, src, solver, steps, (target, source))
        if missing is None and back is not None:  # the cycle comes back on the solver's own grid where it must
            label += f" (back: {bench_quality.own_grid(solver)})"
            console.print(f"{label}: the translation back has {back}")
        marks = {"today": (steps, grid) == today}
        if missing is not None:
            row = bench_quality.QualityRow(label, solver, steps, grid, missing=missing, **marks)
            console.print(f"{label}: missing ({missing})")
        else:
            fingerprint = ""
            if grid == bench_quality.LEARNED:
                fingerprint = bench_quality.learned_fingerprint(src, tgt, solver, steps)
            row = store.reusable((grid, steps), fingerprint)
            if row is None:
                options = bench_quality.options_of(solver, steps, grid)
                row, _ = _measured(run, options, label, grid, ref_translation)
                row = dataclasses.replace(row, fingerprint=fingerprint, **marks)
            else:
                row = dataclasses.replace(row, **marks)
                console.print(f"{label}: read back from {store.path}")
                _show(row)
        store.keep(row)
        rows.append(row)

    today_row = next((r for r in rows if r.today and r.missing is None), None)
    choice = choose(rows, ref_row, today_row)
    _show_choice(choice)
    table = [ref_row, *rows]
    marks = bench_quality.with_marks(table, {"fast": choice.fast, "default": choice.default, "exact": choice.exact})
    presets = {name: None if p is None else p.to_json() for name, p in choice.presets().items()}
    store.save({"presets": presets, "why": choice.why})
    header = _header(command, source, target, len(x), dev, reference, resamples, seed, reals)
    md = f"{header}\n\n{bench_quality.to_markdown(table, marks)}\n{_choice_text(choice)}\n"
    stem = out_dir / f"quality-{dev.type}"
    atomic_write(stem.with_suffix(".md"), lambda f: f.write(md.encode()))
    atomic_write(stem.with_suffix(".csv"), lambda f: f.write(bench_quality.to_csv(table).encode()))
    title = f"DDIB {source} -> {target}: quality and distance to the converged translation vs NFE ({len(x)} images)"
    save_png(bench_quality.chart(rows, ref_row, title), stem.with_suffix(".png"))
    console.print(f"table: {stem}.md, {stem}.csv, {stem}.json; figure: {stem}.png")
    if save_presets:
        _save(writable, solver, choice, f"{source} → {target}", len(x), f"{stem}.md")


def _measured(run: bench_quality.Bridge, options: ode.ODEOptions, label: str, grid: str,
              reference: torch.Tensor | None) -> tuple[bench_quality.QualityRow, torch.Tensor]:  # fmt: skip
    """A row measured with a bar over the images translated either way."""
    with bar("quality") as progress:
        task = progress.add_task(label, total=2 * len(run.x))
        row, y = run.measure(options, label, grid, reference, lambda k: progress.update(task, completed=k))
    _show(row)
    return row, y


def _show(row: bench_quality.QualityRow) -> None:
    figures = ", ".join(
        f"{TITLES[name]} {bench_quality.cell(row.figures.get(name), name)}"
        for name in ("read_as_target", "hue_error_median", "cycle_read_as_source", "cycle_rms", "frechet_distance")
        if row.figures.get(name) is not None
    )
    console.print(
        f"{row.label}: {row.nfe:.4g} NFE per direction, {figures}; to converged: median image "
        f"{row.median_image:.3g}, {row.over_one_level:.0%} of images > 1 level, batch RMS {row.batch_rms:.3g} "
        f"levels; {row.images_per_s:.3g} images/s"
    )


def _choice_text(choice: Choice) -> str:
    def name(row):
        return "none" if row is None else f"{row.label} ({row.nfe:.4g} NFE per direction)"

    return (
        f"Presets: **fast** {name(choice.fast)}; **default** {name(choice.default)}; **exact** "
        f"{name(choice.exact)}. Default: {choice.why}."
    )


def _show_choice(choice: Choice) -> None:
    console.print(_choice_text(choice).replace("**", ""))
    if choice.exact is None:
        console.print(
            f"no solve is within {EXACT_LEVELS} level (median image) of the converged translation: add step counts "
            "to --steps-list for an exact preset"
        )


def _save(writable, solver: str, choice: Choice, bridge: str, images: int, table: str) -> None:
    """Each model's "quality" entry for the solver, written as tune-solver writes its entries."""
    for loaded in writable:
        path, raw = settings_of(loaded)
        entry = presets_json(choice.presets(), bridge=bridge, images=images, table=table, why=choice.why)
        raw.setdefault("quality", {})[loaded.diffusion.solver_key(solver)] = entry
        ckpt.write_json(path, raw)
        console.print(f"presets saved in {path} (`--quality fast|default|exact`; the default applies without it)")


def _header(command, source, target, n, dev, reference, resamples, seed, reals) -> str:
    fd = "no FD (the target is not a digit domain)" if reals is None else f"FD to all {len(reals)} real {target}"
    return (
        f"`{command}`: DDIB {source} → {target}, {n} images, {_device_name(dev)}, {torch.get_num_threads()} "
        f"threads. Each quality figure is its value on all the images with a 95% percentile bootstrap interval "
        f"({resamples} resamples of the images, seed {seed}; FD's shifted back by the resamples' mean excess); "
        f"{fd}; the cycle is the translation back at the same solve, its RMS in 8-bit levels. To converged: each "
        f"image's RMS distance in 8-bit levels to the converged translation ({reference.describe()}), the median "
        f"image's, the share over one level, and the RMS over all images. NFE per image and direction. The presets "
        f"(bench/preset_rule.py) compare {', '.join(TITLES[f] for f in RULE_FIGURES)}."
    )


def _command(source, target, n, seed, inputs, steps_list, grids, solver, reference, resamples, symmetry, models_dir,
             out_dir) -> str:  # fmt: skip
    """The command line that remakes the table (resuming from its JSON)."""
    parts = ["ddib", "bench", "quality", "--from", source, "--to", target, "-n", str(n)]
    parts += ["--seed", str(seed)] if seed else []
    for path in inputs or []:
        parts += ["--inputs", str(path)]
    parts += ["--steps-list", steps_list, "--grids", grids]
    parts += ["--solver", solver] if solver != ode.DEFAULT_SOLVER else []
    parts += ["--reference", reference]
    parts += ["--resamples", str(resamples)] if resamples != RESAMPLES else []
    parts += ["--symmetry", symmetry] if symmetry != "auto" else []
    parts += ["--models-dir", str(models_dir)] if models_dir else []
    parts += ["--out-dir", str(out_dir)]
    return " ".join(shlex.quote(p) for p in parts)


def _slug(name: str) -> str:
    """A domain's name as a folder name (a model named by its path: its last part)."""
    return Path(name.replace(":", "-")).name or "model"
