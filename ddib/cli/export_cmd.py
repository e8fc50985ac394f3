"""`ddib export`: copy a trained model's inference files (config.json + EMA weights) to a folder, e.g. to ship it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from ..errors import DDIBError
from ..model import checkpoint as ckpt
from ..model.registry import find_model, models_dir_or_default
from ..model.symmetry import check_symmetry
from .app import app, console
from .options import ModelsDirOpt


@app.command("export")
def export_command(
    domain: str = typer.Option(..., "--domain", help="Domain whose model to export"),
    out: Path = typer.Option(..., "--out", help="Destination folder (gets config.json + model.safetensors)"),
    fp16: bool = typer.Option(False, "--fp16", help="Store weights as float16 (half the size; loaded as float32)"),
    symmetry: str = typer.Option(
        "keep",
        "--symmetry",
        help="The copy's default test-time averaging (none, rgb-cyclic, rgb-all, rgb-flip, chroma-flip) "
        "[default: keep]",
    ),
    models_dir: Optional[str] = ModelsDirOpt,
) -> None:
    """Write a self-contained inference copy of a model (or of a resumable run's EMA): no optimiser state, nothing
    pickled."""
    run = models_dir_or_default(models_dir) / domain
    if ckpt.is_weightless_run(run):  # e.g. a committed resumable state: its EMA weights are in the state
        path, where = run, "training state"
        model, cfg, meta = ckpt.load_model_from_state(run)
    else:
        loc = find_model(domain, models_dir)
        if loc.reference is not None:
            raise DDIBError(
                f"{loc.domain} is a {loc.reference.format} model ({loc.reference.path}); `ddib export` copies "
                f"models ddib trained, and that model's own files already are its inference copy"
            )
        if loc.label is not None:
            raise DDIBError(
                f"{loc.domain} is a label of the conditional model {loc.path.name}; export that model "
                f"(--domain {loc.path.name}), which carries all of its labels"
            )
        path, where = loc.path, loc.where
        model, cfg, meta = ckpt.load_model(path)
    if out.resolve() == path.resolve():
        raise DDIBError(f"--out {out} is the model's own folder")
    _, raw = ckpt.read_config(path)
    if symmetry != "keep":
        check_symmetry(symmetry, cfg.model.data_shape, cfg.diffusion.color_space, cfg.diffusion.quotient)
        raw = {**raw, "diffusion": {**raw["diffusion"], "symmetry": symmetry}}
    out.mkdir(parents=True, exist_ok=True)
    ckpt.save_weights(out, model, {**meta, "dtype": "float16" if fp16 else "float32"}, torch.float16 if fp16 else None)
    ckpt.write_json(out / ckpt.CONFIG_FILE, raw)
    size = (out / ckpt.WEIGHTS_FILE).stat().st_size
    averaging = raw["diffusion"].get("symmetry", "none")
    console.print(
        f"exported {domain} ({where}, step {raw.get('trained_steps', '?')}, symmetry {averaging}) → {out} "
        f"({size / 1e6:.1f} MB)"
    )
