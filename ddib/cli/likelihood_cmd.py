"""`ddib likelihood` and `ddib classify`: exact bits/dim under each domain model, and the ranking it implies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..bridge.batching import chunks
from ..data.inputs import read_inputs
from ..errors import DDIBError
from ..io.atomic import atomic_write
from ..likelihood.source_inference import (
    LIKELIHOOD_BATCH,
    LIKELIHOODS,
    DomainScore,
    check_method,
    likelihood_batch,
    rank,
    score_images,
)
from ..model.registry import domain_models, find_model, load_domain_model, model_labels
from ..train import distributed
from ..utils import resolve_device
from .app import app, console
from .options import DeviceOpt, ModelsDirOpt, ResizeOpt, SkipBadOpt, SymmetryOpt, report_skipped, shards
from .progress import bar
from .source_choice import LevelsOpt, MethodOpt

ProbesOpt = typer.Option(4, "--probes", min=1, help="Rademacher probes of the Hutchinson divergence estimate")
BatchOpt = typer.Option(
    None, "--batch-size", min=1, help=f"Images per batch [default: {LIKELIHOOD_BATCH} of 32×32, fewer of larger images]"
)
TolOpt = typer.Option(1e-4, "--tol", help="rtol = atol of the dopri5 solve")


def _load_models(domains: Optional[list[str]], models_dir, dev, symmetry: str = "auto"):
    """The scoring models by domain; a conditional model named with --domain stands for all of its labels."""
    names = domains or [m.domain for m in domain_models(models_dir)]
    expanded = {}
    for name in names:
        loc = find_model(name, models_dir)
        if loc.is_union:
            expanded.update({label: f"{name}:{label}" for label in model_labels(loc.path)})
        else:
            expanded[loc.domain] = name
    models = {}
    for name, spec in expanded.items():
        loaded = load_domain_model(spec, models_dir, dev, symmetry)
        if not loaded.is_points:
            models[name] = loaded.diffusion
        elif domains:
            raise DDIBError(f"{name} is a point domain; likelihoods here take images")
    if not models:
        raise DDIBError("no image models to score with; train one with `ddib train`")
    shapes = {tuple(m.data_shape) for m in models.values()}
    if len(shapes) > 1:
        raise DDIBError(f"the models have different data shapes {sorted(shapes)}; name comparable ones with --domain")
    return models


def _score(inputs, domains, probes, tol, seed, batch_size, device, models_dir, method="ode", levels=16,
           symmetry="auto", skip_bad=False, resize="crop"):  # fmt: skip
    """(images, models, scores per batch, seconds, processes) on the first process; None on the others. Under
    torchrun each process scores whole batches of the one-process run (each batch draws from `seed` alone), so the
    numbers are those one process gives."""
    check_method(method)
    if not tol > 0:
        raise DDIBError(f"--tol must be positive, got {tol:g}")
    info, dev = distributed.setup(resolve_device(device))
    models = _load_models(domains, models_dir, dev, symmetry)
    channels, size, _ = next(iter(models.values())).data_shape
    images = read_inputs(inputs, size, channels, skip_bad, resize=resize)
    batches = list(chunks(images.pixels, batch_size or likelihood_batch(models)))
    t0 = time.perf_counter()
    mine = []
    with bar("score") as progress:  # a likelihood solve of a large model runs for minutes per batch
        task = progress.add_task(f"{method} under {len(models)} models", total=len(images.pixels),
                                 visible=info.is_main)  # fmt: skip
        for k in distributed.shard(list(range(len(batches))), info):
            mine.append(score_images(models, batches[k], probes, tol, tol, seed, dev, method, levels))
            progress.advance(task, len(batches[k]) * info.world_size)
    scores_per_batch = distributed.gather_in_order(mine, info)
    seconds = time.perf_counter() - t0
    distributed.teardown(info)
    return (images, models, scores_per_batch, seconds, info.world_size) if info.is_main else None


def _starts(batches: list[list[DomainScore]]):
    """(index of each batch's first image, its scores)."""
    start = 0
    for scores in batches:
        yield start, scores
        start += len(scores[0].bits_per_dim)


@app.command("likelihood")
@shards
def likelihood_command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders"),
    domains: Optional[list[str]] = typer.Option(None, "--domain", help="Score under these models [default: all]"),
    probes: int = ProbesOpt,
    tol: float = TolOpt,
    seed: int = typer.Option(0, "--seed", help="Seed of the dequantisation noise and the probes"),
    batch_size: Optional[int] = BatchOpt,
    method: str = typer.Option(
        "ode", "--method", help="ode (exact, Hutchinson) | elbo (bound at --levels noise levels)"
    ),
    levels: int = LevelsOpt,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers as JSON"),
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    skip_bad: bool = SkipBadOpt,
    resize: str = ResizeOpt,
) -> None:
    """Bits/dim of each image under each domain model (probability-flow ODE, dequantised 8-bit data)."""
    check_method(method, LIKELIHOODS)
    scored = _score(inputs, domains, probes, tol, seed, batch_size, device, models_dir, method, levels, symmetry,
                    skip_bad, resize)  # fmt: skip
    if scored is None:  # another torchrun process: the first one reports
        return
    images, models, batches, seconds, processes = scored
    files = images.files
    table = Table("image", *[f"{d} bits/dim" for d in models])
    records = []
    nfe = {d: 0 for d in models}
    for start, scores in _starts(batches):
        for j in range(len(scores[0].bits_per_dim)):
            f = files[start + j]
            cells = [f"{s.bits_per_dim[j]:.3f} ± {s.stderr[j]:.3f}" for s in scores]
            table.add_row(str(f), *cells)
            records.append(
                {"image": str(f), **{s.domain: [s.bits_per_dim[j].item(), s.stderr[j].item()] for s in scores}}
            )
        for s in scores:
            nfe[s.domain] += s.nfe
    console.print(table)
    per_image = ", ".join(f"{d} {n / len(batches):.0f}" for d, n in nfe.items())
    console.print(
        f"{len(files)} image{'' if len(files) == 1 else 's'}{images.describe_resize()} × {len(models)} models "
        f"in {seconds:.1f}s"
        f"{f' on {processes} processes' if processes > 1 else ''}; "
        f"NFE per batch: {per_image}"
    )
    if json_out is not None:
        meta = {"method": method, "probes": probes, "levels": levels, "tol": tol, "seed": seed}
        text = json.dumps({**meta, "results": records}, indent=2) + "\n"
        atomic_write(json_out, lambda fh: fh.write(text.encode()))
    report_skipped(images)


@app.command("classify")
@shards
def classify_command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders"),
    domains: Optional[list[str]] = typer.Option(None, "--domain", help="Candidate domains [default: all]"),
    probes: int = ProbesOpt,
    tol: float = TolOpt,
    seed: int = typer.Option(0, "--seed"),
    batch_size: Optional[int] = BatchOpt,
    method: str = MethodOpt,
    levels: int = LevelsOpt,
    device: str = DeviceOpt,
    models_dir: Optional[str] = ModelsDirOpt,
    symmetry: str = SymmetryOpt,
    skip_bad: bool = SkipBadOpt,
    resize: str = ResizeOpt,
) -> None:
    """Rank the domains by likelihood for each image; say when the margin is within the estimator's error."""
    scored = _score(inputs, domains, probes, tol, seed, batch_size, device, models_dir, method, levels, symmetry,
                    skip_bad, resize)  # fmt: skip
    if scored is None:
        return
    images, models, batches, _, _ = scored
    files = images.files
    for start, scores in _starts(batches):
        for j in range(len(scores[0].bits_per_dim)):
            r = rank(scores, j)
            ranking = " > ".join(f"{d} ({bpd:.3f})" for d, bpd, _ in r.order)
            verdict = r.best if r.decisive else "undecided (margin within 2 standard errors)"
            console.print(f"{files[start + j]}: {verdict}; margin {r.margin:.3f} ± {r.margin_stderr:.3f} "
                          f"bits/dim; {ranking}")  # fmt: skip
    report_skipped(images)
