"""`ddib models`: list the trained models ddib can use and where they come from."""

from __future__ import annotations

from rich.table import Table

from .. import checkpoint as ckpt
from ..registry import available_models
from .app import app, console
from .options import ModelsDirOpt


@app.command("models")
def models_command(models_dir: str | None = ModelsDirOpt) -> None:
    """List available models: local ones (models dir) first, bundled ones as fallback."""
    found = available_models(models_dir)
    if not found:
        console.print("no models found; train one with `ddib train --domain fives`")
        return
    table = Table("domain", "origin", "model", "steps", "data", "path")
    for loc in found:
        cfg, raw = ckpt.read_config(loc.path)
        m = cfg.model
        arch = f"{m.kind} {m.data_shape}"
        if cfg.domain.get("kind") == "points":
            data = f"{cfg.domain.get('n')} 2-D points"
        else:
            data = cfg.domain.get("path") or f"digit {cfg.domain.get('digit')}"
        table.add_row(loc.domain, loc.origin, arch, str(raw.get("trained_steps", "?")), str(data), str(loc.path))
    console.print(table)
