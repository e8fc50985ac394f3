"""`ddib models`: list the trained models ddib can use and where they come from."""

from __future__ import annotations

from rich.table import Table

from ..model import checkpoint as ckpt
from ..model.registry import available_models, weightless_runs
from .app import app, console
from .options import ModelsDirOpt


@app.command("models")
def models_command(models_dir: str | None = ModelsDirOpt) -> None:
    """List available domains and their models: local ones (models dir) first, bundled ones as fallback; the
    labels of a class-conditional model are domains too."""
    found = available_models(models_dir)
    runs = weightless_runs(models_dir)
    if runs:
        console.print(f"training runs without saved weights (`ddib export` writes them): {', '.join(map(str, runs))}")
    if not found:
        console.print("no models found; train one with `ddib train --domain fives`")
        return
    table = Table("domain", "origin", "model", "steps", "data", "path")
    for loc in found:
        cfg, raw = ckpt.read_config(loc.path)
        m = cfg.model
        arch = f"{m.kind} {m.data_shape}"
        if m.num_classes:
            arch += f", conditional on {m.num_classes} labels"
        if cfg.diffusion.color_space != "rgb":
            arch += f", {cfg.diffusion.color_space} colour space"
        if cfg.diffusion.quotient == "hue":
            arch += ", hue left out (hue-0 slice)"
        if cfg.domain.get("kind") == "points":
            data = f"{cfg.domain.get('n')} 2-D points"
        elif cfg.domain.get("kind") == "group":
            members = dict(zip(cfg.domain["labels"], cfg.domain["members"], strict=True))
            member = members.get(loc.label, {})
            data = (member.get("path") or f"digit {member.get('digit')}") if loc.label else ", ".join(members)
        else:
            data = cfg.domain.get("path") or f"digit {cfg.domain.get('digit')}"
        table.add_row(loc.domain, loc.where, arch, str(raw.get("trained_steps", "?")), str(data), str(loc.path))
    console.print(table)
