"""`ddib plot`: the transport map of a point-domain bridge as a figure (source, latents, translations)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..bridge import ode
from ..bridge.points import DEFAULT_POINT_BATCH, load_point_model, test_points, translate_points
from ..errors import DDIBError
from ..io.images import save_png
from ..io.outputs import check_png
from ..io.point_figures import transport_figure
from ..train.log import LOG_FILE, loss_chart, read_log
from ..utils import resolve_device
from .app import app, console
from .options import DeviceOpt, ModelsDirOpt, SeedOpt, solve_options


@app.command("plot")
@solve_options
def plot_command(
    source: str = typer.Option(..., "--from", help="Source point domain"),
    target: str = typer.Option(..., "--to", help="Target point domain"),
    n: int = typer.Option(5000, "-n", "--num", min=1, help="Source points (fresh draws from the generator)"),
    out: Path | None = typer.Option(None, "--out", help="Figure PNG [default: <from>-to-<to>.png]"),
    seed: int = SeedOpt,
    batch_size: int = typer.Option(DEFAULT_POINT_BATCH, "--batch-size", min=1, help="Points per ODE solve"),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
    opts: ode.ODEOptions | None = None,  # --solver --steps --quality --rtol --atol --rho (solve_options)
) -> None:
    """Three panels: source points, their latents, their translations, each point coloured by its source position."""
    out = out or Path(f"{source}-to-{target}.png")
    check_png(out)
    if source == target:
        raise DDIBError("--from and --to must differ")
    dev = resolve_device(device)
    src, tgt = load_point_model(source, models_dir, dev), load_point_model(target, models_dir, dev)
    x = test_points(src, n, seed)
    opts = ode.resolve_steps(opts, src.diffusion, tgt.diffusion)
    result = translate_points(src, tgt, src.to_raw(x), opts, batch_size)
    figure = transport_figure(
        x,
        result.latent,
        result.output,
        (
            f"source: {source} (standardised)",
            f"latent: {source} encoder, t = 1",
            f"translated: {target} (standardised)",
        ),
        f"DDIB {source} -> {target}: {n} points, {opts.describe()}, {result.nfe_per_point:.0f} NFE per point; "
        "colour = position in the source (hue: angle, brightness: radius)",
    )
    save_png(figure, out)
    console.print(f"plotted {n} {source} → {target} points with {opts.describe()} ({result.seconds:.1f}s) → {out}")


@app.command("plot-loss")
def plot_loss_command(
    runs: list[Path] = typer.Argument(..., help="Model directories holding a train_log.jsonl (several: compared)"),
    out: Path | None = typer.Option(None, "--out", help="Figure PNG [default: <run>/loss.png, or loss.png]"),
    smoothed: bool = typer.Option(False, "--smoothed", help="Plot the smoothed loss instead of interval means"),
) -> None:
    """Training loss against step, from the runs' train_log.jsonl."""
    out = out or (runs[0] / "loss.png" if len(runs) == 1 else Path("loss.png"))
    check_png(out)
    logs = {}
    for run in runs:
        if not (run / LOG_FILE).is_file():
            raise DDIBError(f"no {LOG_FILE} in {run}: give a model directory written by `ddib train`")
        logs[str(run)] = read_log(run / LOG_FILE)
        if not logs[str(run)]:
            raise DDIBError(f"{run / LOG_FILE} has no log lines yet")
    save_png(loss_chart(logs, smoothed), out)
    last = ", ".join(f"{name} step {r[-1]['step']} loss {r[-1]['loss']:.4f}" for name, r in logs.items())
    console.print(f"plotted {len(logs)} run(s) ({last}) → {out}")
