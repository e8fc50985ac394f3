"""`ddib cycle` and `ddib cycle-table`: cycle consistency A → B → A of point-domain bridges."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer

from ..bench import translate as bench
from ..bridge import ode
from ..bridge.points import (
    DEFAULT_POINT_BATCH,
    PAPER_PAIRS,
    TABLE_SETTINGS,
    cycle_consistency,
    cycle_table,
    load_point_model,
    test_points,
    time_one_eval,
)
from ..errors import DDIBError
from ..io.atomic import atomic_write
from ..utils import resolve_device
from .app import app, console
from .options import DeviceOpt, ModelsDirOpt, SeedOpt, solve_options

SPACE = "L2 in the source model's standardised space (scalar mean 0, std 1 over all coordinates)"


@app.command("cycle")
@solve_options
def cycle_command(
    source: str = typer.Option(..., "--from", help="Point domain A (its fresh test points are cycled)"),
    target: str = typer.Option(..., "--to", help="Point domain B"),
    n: int = typer.Option(90_000, "-n", "--num", min=1, help="Points of A (the paper used 90,000)"),
    seed: int = SeedOpt,
    batch_size: int = typer.Option(DEFAULT_POINT_BATCH, "--batch-size", min=1, help="Points per ODE solve"),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result as JSON ('-': stdout only)"),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Translate A → B → A and report the mean / max L2 distance between each point and its cycled self."""
    if source == target:
        raise DDIBError("--from and --to must differ")
    dev = resolve_device(device)
    src, tgt = load_point_model(source, models_dir, dev), load_point_model(target, models_dir, dev)
    x = test_points(src, n, seed)
    opts = ode.resolve_steps(opts, src.diffusion, tgt.diffusion)
    r = cycle_consistency(src.diffusion, tgt.diffusion, x, opts, batch_size)
    report = {"source": source, "target": target, "seed": seed, "device": str(dev), "space": SPACE, **r.to_dict()}
    if json_out is not None and str(json_out) == "-":
        console.print(json.dumps(report, indent=2))
        return
    console.print(
        f"cycle {source} → {target} → {source}: {n} points, {opts.describe()}, {r.nfe_per_point} NFE per point "
        f"(4 solves), {r.seconds:.1f}s ({1000 * r.seconds_per_eval:.1f} ms per network evaluation on all points)"
    )
    console.print(f"L2 distance original ↔ cycled: mean {r.mean_l2:.4f}, median {r.median_l2:.4f}, max {r.max_l2:.4f}")
    console.print(f"({SPACE})")
    if json_out is not None:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(json_out, lambda f: f.write(text.encode()))
        console.print(f"report: {json_out}")


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'moons:squares,rings:checkerboards' → [(moons, squares), (rings, checkerboards)]."""
    pairs = []
    for item in text.split(","):
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 2 or not all(parts):
            raise DDIBError(f"--pairs: expected A:B items separated by commas, got {item.strip()!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


@app.command("cycle-table")
def cycle_table_command(
    n: int = typer.Option(2000, "-n", "--num", min=1, help="Points of each source domain per pair"),
    seed: int = SeedOpt,
    pairs: str | None = typer.Option(
        None, "--pairs", help="A:B,C:D… [default: the paper's pairs, ↔ = both directions, plus moons → squares]"
    ),
    fast_only: bool = typer.Option(False, "--fast-only", help=f"Skip the ddim × 1000 rows (keep {ode.DEFAULT_SOLVER})"),
    batch_size: int = typer.Option(DEFAULT_POINT_BATCH, "--batch-size", min=1, help="Points per ODE solve"),
    out_dir: Path = typer.Option(Path("bench"), "--out-dir", help="Where to write cycle-points.md and .csv"),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
) -> None:
    """Cycle consistency of the paper's pairs with ddim × 1000 (official) and the default fast solver."""
    chosen = parse_pairs(pairs) if pairs else PAPER_PAIRS
    for a, b in chosen:
        if a == b:
            raise DDIBError(f"--pairs: {a}:{b} translates a domain to itself")
    settings = TABLE_SETTINGS[1:] if fast_only else TABLE_SETTINGS
    dev = resolve_device(device)
    loaded = {}

    def load(name: str):
        if name not in loaded:
            loaded[name] = load_point_model(name, models_dir, dev)
        return loaded[name]

    for name in {d for p in chosen for d in p}:  # fail fast on a missing model, before hours of solving
        load(name)
    per_eval = time_one_eval(load(chosen[0][0]).diffusion, n, batch_size)
    evals = len(chosen) * sum(4 * ode.expected_nfe(o) for o in settings)
    console.print(
        f"one network evaluation on {n} points: {1000 * per_eval:.1f} ms; {evals} evaluations in all → about "
        f"{evals * per_eval / 60:.0f} min"
    )

    threads = torch.get_num_threads()
    header = (
        f"Cycle consistency A → B → A of DDIB on the 2-D point domains: {n} fresh test points of A per pair "
        f"(seed {seed}); distances are {SPACE}. NFE per point counts all four ODE solves. {dev.type}, "
        f"{threads} threads."
    )
    done: list = []

    def write() -> str:
        md = f"{header}\n\n{bench.to_markdown(done, '.4g')}"
        atomic_write(out_dir / "cycle-points.md", lambda f: f.write(md.encode()))
        atomic_write(out_dir / "cycle-points.csv", lambda f: f.write(bench.to_csv(done).encode()))
        return md

    def show(r):
        done.append(r)
        write()  # after every row: a long run that is stopped keeps what it measured
        console.print(
            f"{r.source} → {r.target} → {r.source}  {r.solver} × {r.steps}: mean {r.mean_l2:.4f}, max {r.max_l2:.4f} "
            f"({r.nfe_per_point} NFE, {r.seconds:.0f}s)"
        )

    cycle_table(load, chosen, settings, n, seed, batch_size, on_row=show)
    console.print(write())
    console.print(f"tables: {out_dir / 'cycle-points.md'}, {out_dir / 'cycle-points.csv'}")
