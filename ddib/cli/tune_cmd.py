"""`ddib tune-solver`: place a fixed-step solver's σ̄ nodes for one model, saved in its config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..bench import translate as bench
from ..bridge import ode
from ..bridge.presets import DEFAULT, Preset
from ..bridge.solvers import GRADIENT, SEARCH, TUNING_METHODS, solvers_with, spec
from ..bridge.tuned import DIRECTIONS, TunedSolve, load_entry, merge_entry, stored
from ..bridge.tuning import TuningData, fit_solver, tune_bridge, tune_solver, tuning_data
from ..errors import DDIBError
from ..model import checkpoint as ckpt
from ..model.references import REFERENCE_FILE, is_reference_dir, read_reference
from ..model.registry import load_domain_model
from ..utils import resolve_device
from .app import app, console
from .options import DataDirOpt, DeviceOpt, ModelsDirOpt
from .progress import bar


@app.command("tune-solver")
def tune_solver_command(
    domain: Optional[str] = typer.Option(
        None, "--domain", help="Domain (or label, or model directory) whose grids to tune"
    ),
    source: Optional[str] = typer.Option(
        None, "--from", help="Tune for one bridge: the source's encode, measured through the target's decode"
    ),
    target: Optional[str] = typer.Option(
        None, "--to", help="Tune for one bridge: the target's decode, on the source's latents"
    ),
    solver: str = typer.Option(
        ode.DEFAULT_SOLVER, "--solver", help=f"Fixed-step solver: {', '.join(ode.FIXED_SOLVERS)}"
    ),
    steps: str = typer.Option("10", "--steps", help="Step count(s) to tune, comma-separated (e.g. 8,10,12)"),
    n: int = typer.Option(32, "-n", "--num", min=2, help="Tuning images (training split) and as many N(0, I) latents"),
    val: int = typer.Option(
        32, "--val", min=2, help="Validation images (the last of the held-out split) and as many latents"
    ),
    reference: str = typer.Option("unipc:200", "--reference", help="Converged solve: SOLVER:STEPS or SOLVER:TOL"),
    method: str = typer.Option(
        "auto",
        "--method",
        help="gradient (unipc: nodes and coefficients by gradient through the solver; a bridge's "
        "two ends jointly) | search (node-by-node search, then fitted coefficients) | auto (gradient for unipc)",
    ),
    budget: int = typer.Option(120, "--budget", min=1, help="search: error evaluations per direction"),
    iterations: int = typer.Option(200, "--iterations", min=1, help="gradient: Adam steps"),
    batch_size: Optional[int] = typer.Option(
        None,
        "--batch-size",
        min=1,
        help="gradient: tuning images per step [default: 32 of 32×32, fewer of larger ones]",
    ),
    lr: float = typer.Option(0.02, "--lr", min=0.0, help="gradient: Adam's learning rate (cosine-annealed to 0)"),
    inputs: Optional[list[Path]] = typer.Option(
        None, "--inputs", help="Images of the domain (not a digit domain): the first -n tune, the next --val validate"
    ),
    direction: str = typer.Option(
        "both", "--direction", help="encode | decode | both (a bridge's source only encodes, its target only decodes)"
    ),
    coefficients: bool = typer.Option(
        True,
        "--coefficients/--no-coefficients",
        help="unipc: also fit per-step corrections (search: on the tuned grid; gradient: with it)",
    ),
    make_default: bool = typer.Option(
        False, "--make-default", help="Make the (smallest) tuned step count the model's default for this solver"
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the image subsets and the latents"),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    data_dir: Optional[str] = DataDirOpt,
) -> None:
    """Tune the encode and decode step grids of a model (or of one bridge's two ends) against a converged solve;
    later solves use them."""
    counts = [int(s) for s in steps.split(",") if s.strip()] if steps.replace(",", "").isdigit() else []
    if not counts or min(counts) < 1:
        raise DDIBError(f"--steps {steps!r}: give positive step counts, e.g. 10 or 8,10,12")
    if solver not in ode.FIXED_SOLVERS:
        raise DDIBError(f"--solver {solver}: grids are for fixed-step solvers ({', '.join(ode.FIXED_SOLVERS)})")
    if direction not in (*DIRECTIONS, "both"):
        raise DDIBError(f"--direction {direction}: choose encode, decode or both")
    bridge = source is not None or target is not None
    if bridge == (domain is not None) or (bridge and (source is None or target is None)):
        raise DDIBError("give --domain D (one model) or --from SOURCE --to TARGET (one bridge), not both")
    if method == "auto":
        method = spec(solver).tuning[0]
    if method not in TUNING_METHODS:
        raise DDIBError(f"--method {method}: choose gradient, search or auto")
    if method not in spec(solver).tuning:
        learners = " and ".join(solvers_with(GRADIENT))
        raise DDIBError(
            f"--method gradient learns {learners}'s nodes and coefficients; use --method search for {solver}"
        )
    directions = DIRECTIONS if direction == "both" else (direction,)
    if method == GRADIENT and bridge and direction != "both":
        raise DDIBError(
            "--method gradient fits a bridge's encode and decode together: drop --direction, or use --method search"
        )
    ref = bench.parse_reference(reference)
    dev = resolve_device(device)
    if bridge:  # the source encodes, the target decodes, both on the source's images
        src, tgt = (writable_model(name, models_dir, dev) for name in (source, target))
        jobs = [(m, (d,)) for m, d in ((src, "encode"), (tgt, "decode")) if d in directions]
        data_domain, partners = src, {"encode": {"target": tgt.diffusion}, "decode": {"source": src.diffusion}}
    else:
        one = writable_model(domain, models_dir, dev)
        jobs, data_domain, partners = [(one, directions)], one, {}
    if make_default:  # checked before the long part: a default needs grids in both directions
        for loaded, tuned_here in jobs:
            _check_default(loaded, solver, min(counts), tuned_here)
    data_of = data_domain.digits or data_domain.location.domain  # `fives` for the model fives-rgb
    data = tuning_data(data_of, data_domain.diffusion, n, val, inputs, seed, data_dir)
    if method == GRADIENT and bridge:
        _fit_bridge(src, tgt, solver, counts, ref, data, iterations, batch_size, coefficients, lr)
        for loaded, _ in jobs if make_default else ():
            _make_default(loaded, solver, min(counts))
        return
    for loaded, tuned_here in jobs:
        loc = loaded.location
        extra = partners.get(tuned_here[0], {})
        seen_by = f" for the bridge {src.location.domain} → {tgt.location.domain}" if bridge else ""
        effort = f"{budget} evaluations" if method == SEARCH else f"{iterations} gradient steps"
        console.print(
            f"tuning {solver} {' and '.join(tuned_here)} grids of {loc.domain} ({loc.where}){seen_by} against "
            f"{ref.describe()}: {n} training images of {data_domain.location.domain} + {n} N(0, I) latents to tune, "
            f"{val} + {val} held out to validate, {effort} per direction"
        )
        for count in counts:
            options = ode.ODEOptions(solver, count)
            if method == GRADIENT:  # one model
                with bar("", "best validation {task.fields[best]}") as progress:
                    task = progress.add_task(f"{solver} × {count} gradient fit", total=iterations, best="-")
                    advance = lambda name, k, best, t=task, p=progress: p.update(t, completed=k, best=f"{best:.4g}")  # noqa: E731
                    entry = fit_solver(loaded.diffusion, options, ref, data, tuned_here, iterations, batch_size,
                                       advance, coefficients, lr)  # fmt: skip
                _save_entry(loaded, solver, count, entry)
                _report(entry, solver, count, tuned_here)
                continue
            with bar("", "best {task.fields[best]}") as progress:
                tasks: dict[str, object] = {}

                def on_eval(name: str, k: int, best: float, count=count, progress=progress, tasks=tasks) -> None:
                    if name not in tasks:
                        tasks[name] = progress.add_task(f"{solver} × {count} {name} grid", total=budget, best="-")
                    progress.update(tasks[name], completed=k, best=f"{best:.4g}")

                entry = tune_solver(
                    loaded.diffusion, options, ref, data, budget, on_eval, tuned_here, coefficients, **extra
                )  # fmt: skip
            if bridge:
                entry = entry.for_bridge(f"{src.location.domain} → {tgt.location.domain}")
            _save_entry(loaded, solver, count, entry)
            _report(entry, solver, count, tuned_here)
        if make_default:
            _make_default(loaded, solver, min(counts))
        _saved(loaded)


def _fit_bridge(src, tgt, solver: str, counts: list[int], ref: ode.ODEOptions, data: TuningData, iterations: int,
                batch_size: int | None, coefficients: bool, lr: float) -> None:  # fmt: skip
    """Both ends of a bridge fitted jointly by gradient, on the translation's error; saved in both configs."""
    bridge = f"{src.location.domain} → {tgt.location.domain}"
    console.print(
        f"fitting the {solver} encode of {src.location.domain} ({src.location.where}) and decode of "
        f"{tgt.location.domain} ({tgt.location.where}) jointly for the bridge {bridge} against {ref.describe()}: "
        f"{len(data.tune_images)} training images to tune, {len(data.val_images)} held out to validate, {iterations} "
        "gradient steps"
    )
    for count in counts:
        with bar("", "best validation {task.fields[best]}") as progress:
            task = progress.add_task(f"{solver} × {count} joint gradient fit", total=iterations, best="-")
            advance = lambda k, best, t=task, p=progress: p.update(t, completed=k, best=f"{best:.4g}")  # noqa: E731
            encode, decode = tune_bridge(src.diffusion, tgt.diffusion, ode.ODEOptions(solver, count), ref, data,
                                         iterations, batch_size, advance, coefficients, lr)  # fmt: skip
        for loaded, entry in ((src, encode), (tgt, decode)):
            _save_entry(loaded, solver, count, entry.for_bridge(bridge))
        _report(encode, solver, count, ("encode",), what="translation (encode and decode)")
    for loaded in (src, tgt):
        _saved(loaded)


def _make_default(loaded, solver: str, steps: int) -> None:
    path, raw = settings_of(loaded)
    key = loaded.diffusion.solver_key(solver)
    raw.setdefault("default_steps", {})[key] = steps
    stored_presets = raw.get("quality", {}).get(key)
    if isinstance(stored_presets, dict) and DEFAULT in stored_presets:  # a stored default preset would still win
        stored_presets[DEFAULT] = Preset(steps, True).to_json()
    ckpt.write_json(path, raw)
    console.print(f"{solver} × {steps} steps is now the default of {loaded.location.domain} when --steps is not given")


def _saved(loaded) -> None:
    console.print(
        f"saved in {settings_of(loaded)[0]} (commands use it; an explicit --rho solves on that fixed grid instead)"
    )


def settings_of(loaded) -> tuple[Path, dict]:
    """The file a model's tuned solves are kept in (its config.json, or a foreign model's reference.json), read
    anew so that everything else in it is written back as it is now."""
    loc = loaded.location
    if loc.reference is None:
        return loc.path / ckpt.CONFIG_FILE, ckpt.read_config(loc.path)[1]
    read_reference(loc.path)  # checks the file
    return loc.path / REFERENCE_FILE, json.loads((loc.path / REFERENCE_FILE).read_text())


def writable_model(domain: str, models_dir, dev, task: str = "tune"):
    """A model whose config.json `task` (tune-solver, bench quality) may rewrite: an image model that is not one of
    the package's own."""
    loaded = load_domain_model(domain, models_dir, dev)
    loc = loaded.location
    if loaded.is_points:
        raise DDIBError(f"{loc.domain} is a point domain; only image models keep tuned solves and presets")
    if loc.reference is not None and not is_reference_dir(loc.path):
        raise DDIBError(
            f"{loc.domain} is a {loc.format} model named by its path: register it with `ddib models add NAME "
            f"{loc.path}` so that its tuned solves have a place to be kept, and {task} NAME"
        )
    if loc.origin == "bundled":  # the package's own files are not the user's to rewrite
        raise DDIBError(
            f"{loc.domain} is a bundled model: copy it with `ddib export --domain {loc.domain} --out "
            f"models/{loc.domain}` and {task} the copy"
        )
    return loaded


def _check_default(loaded, solver: str, steps: int, tuned_here: tuple[str, ...]) -> None:
    have = stored(loaded.diffusion, solver, steps)
    missing = [d for d in DIRECTIONS if d not in tuned_here and (have is None or have.direction(d) is None)]
    if missing:
        raise DDIBError(
            f"--make-default: {loaded.location.domain}'s {solver} × {steps} would have no {missing[0]} grid; a "
            f"default step count needs tuned grids in both directions (tune it with --direction {missing[0]})"
        )


def _save_entry(loaded, solver: str, count: int, entry: TunedSolve) -> None:
    path, raw = settings_of(loaded)
    grids, key = raw.setdefault("solver_grids", {}), loaded.diffusion.grid_key(solver, count)
    grids[key] = merge_entry(load_entry(grids[key], key) if key in grids else None, entry).to_json()
    ckpt.write_json(path, raw)


def _report(entry: TunedSolve, solver: str, count: int, directions: tuple[str, ...], what: str | None = None) -> None:
    for name in directions:
        part = entry.direction(name)
        e = part.errors
        effort = f"{e.evaluations} evaluations" if e.evaluations is not None else f"{e.iterations} gradient steps"
        fitted = "grid and coefficients" if e.method == GRADIENT and part.corrections is not None else "grid"
        console.print(
            f"{solver} × {count} {what or name}: validation {e.val_default:.4g} → {e.val_tuned:.4g} {e.unit} "
            f"(tuning data {e.tune_default:.4g} → {e.tune_tuned:.4g}; {effort}); kept the {e.kept} {fitted}"
        )
        if e.corrections is not None:
            console.print(
                f"{solver} × {count} {name} with per-step corrections: validation {e.val_corrected:.4g} "
                f"(tuning data {e.tune_corrected:.4g}); {e.corrections}"
            )
