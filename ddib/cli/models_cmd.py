"""`ddib models`: list the models ddib can use and where they come from; `ddib models add` registers a foreign one,
`ddib models remove` unregisters it (the model's own files are never touched)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..errors import DDIBError
from ..model import checkpoint as ckpt
from ..model.external import describe_diffusion, detect_format, guided, load_external, not_found
from ..model.references import REFERENCE_FILE, Reference, is_reference_dir, read_reference, write_reference
from ..model.registry import (
    BUNDLED_DIR,
    available_models,
    foreign_summary,
    is_ddib_model_dir,
    models_dir_or_default,
    not_a_model,
    weightless_runs,
)
from .app import app, console
from .options import ModelsDirOpt

models_app = typer.Typer(
    help="List usable models (`ddib models`), register a foreign one (`ddib models add`) or unregister it "
    "(`ddib models remove`)."
)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models_command(ctx: typer.Context, models_dir: str | None = ModelsDirOpt) -> None:
    """List available domains and their models: local ones (models dir) first, bundled ones as fallback; the
    labels of a class-conditional model are domains too; registered foreign models with their format."""
    if ctx.invoked_subcommand is not None:
        return
    found = available_models(models_dir)
    runs = weightless_runs(models_dir)
    if runs:
        console.print(f"training runs without saved weights (`ddib export` writes them): {', '.join(map(str, runs))}")
    if not found:
        console.print("no models found; train one with `ddib train --domain fives`, or register one with "
                      "`ddib models add NAME PATH`")  # fmt: skip
        return
    table = Table("domain", "origin", "model", "schedule", "steps", "data", "path")
    for loc in found:
        if loc.reference is not None:
            table.add_row(*_foreign_row(loc, models_dir))
            continue
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
        table.add_row(loc.domain, loc.where, arch, describe_diffusion(cfg.diffusion),
                      str(raw.get("trained_steps", "?")), str(data), str(loc.path))  # fmt: skip
    console.print(table)


def _foreign_row(loc, models_dir) -> list[str]:
    """A registered foreign model's row; one that no longer loads says why instead of stopping the listing."""
    ref = loc.reference
    try:
        model = foreign_summary(loc)
    except DDIBError as exc:
        return [loc.domain, loc.origin, f"{ref.format}, unusable: {exc}", "", "", "", str(ref.path)]
    shape = model.config.data_shape
    arch = f"{ref.format} {shape[1]}×{shape[2]}, {shape[0]} channels"
    if model.config.num_classes:
        arch += f", label {ref.label} of {model.config.num_classes} classes"
    elif ref.label is not None:
        arch += f", label {ref.label} of its classifier's {model.label_count} classes"
    if model.classifier is not None:
        arch += f", classifier-guided (scale {model.classifier[1]:g})"
    return [loc.domain, loc.origin, arch, describe_diffusion(model.diffusion), "", "", str(ref.path)]


@models_app.command("add")
def add_command(
    name: str = typer.Argument(..., help="The domain name it will be known by"),
    path: Path = typer.Argument(..., help="A diffusers folder or a guided-diffusion checkpoint (.pt)"),
    label: int | None = typer.Option(None, "--label", help="Class of a class-conditional model this domain is"),
    flags: str | None = typer.Option(
        None,
        "--flags",
        help="guided-diffusion checkpoints: its MODEL_FLAGS ('--image_size 256 ...') or a JSON object "
        "[default: the JSON beside the file]",
    ),  # fmt: skip
    force: bool = typer.Option(False, "--force", help="Replace a model registered under the same name"),
    models_dir: str | None = ModelsDirOpt,
) -> None:
    """Register a model trained elsewhere under a domain name (a reference to its files, not a copy)."""
    from ..data.domains import check_domain_name

    check_domain_name(name)
    if not path.exists():
        raise not_found(str(path))
    fmt = detect_format(path)
    if fmt is None and is_ddib_model_dir(path):
        copy = f"ddib export --domain {path} --out {models_dir_or_default(models_dir) / name}"
        raise DDIBError(f"{path} is a ddib model: every command takes it by its path as it is; to give it a name, "
                        f"copy it with `{copy}`")  # fmt: skip
    if fmt is None:
        raise not_a_model(path)
    if flags is not None and fmt != "guided-diffusion":
        raise DDIBError("--flags are for guided-diffusion checkpoints; a diffusers folder describes itself")
    parsed = guided.given_flags(flags) if flags is not None else None
    folder = models_dir_or_default(models_dir) / name
    if folder.exists() and not (force and is_reference_dir(folder)):
        if is_reference_dir(folder):
            raise DDIBError(f"{folder} already holds a registered model; pick another name or pass --force")
        raise DDIBError(f"{folder} already exists (a trained model or a run); pick another name")
    model = load_external(path, fmt, parsed)  # fails now, with its reason, rather than at the first translation
    if model.num_classes and label is None:
        raise DDIBError(f"{path} is class-conditional ({model.num_classes} classes): give the class with --label N")
    if label is not None and not 0 <= label < model.label_count:
        raise DDIBError(f"--label {label}: {path} has {model.label_count or 'no'} classes")
    write_reference(folder, Reference(fmt, path.resolve(), label, parsed))
    console.print(f"registered {name}: {fmt} model {path.resolve()}"
                  f"{f', label {label}' if label is not None else ''} → {folder}")  # fmt: skip


@models_app.command("remove")
def remove_command(
    name: str = typer.Argument(..., help="A domain name registered with `ddib models add`"),
    models_dir: str | None = ModelsDirOpt,
) -> None:
    """Unregister a model added with `ddib models add` (its reference and tuned solves; the model's files stay)."""
    from ..data.domains import check_domain_name

    check_domain_name(name)
    folder = models_dir_or_default(models_dir) / name
    if not is_reference_dir(folder):
        raise DDIBError(_not_registered(name, folder, models_dir))
    ref = read_reference(folder)
    (folder / REFERENCE_FILE).unlink()
    kept = sorted(p.name for p in folder.iterdir())
    if not kept:
        folder.rmdir()
    tuned = " and its tuned solves" if ref.solver_grids or ref.quality or ref.default_steps else ""
    left = f"; {folder} kept for the files it also holds ({', '.join(kept)})" if kept else ""
    console.print(f"unregistered {name}{tuned}: {ref.format} model {ref.path} left as it is{left}")


def _not_registered(name: str, folder, models_dir) -> str:
    """Why NAME cannot be unregistered: trained weights and bundled models are not references, and are not deleted."""
    if folder.is_dir() and any(folder.iterdir()):
        return (f"{folder} is a model or run ddib trained, not a registered reference; `ddib models remove` "
                f"only unregisters models added with `ddib models add` (delete the folder yourself to discard "
                f"it)")  # fmt: skip
    if (BUNDLED_DIR / name).is_dir():
        return f"{name} is a model bundled with ddib, not a registered one; nothing to remove"
    registered = sorted(loc.domain for loc in available_models(models_dir) if loc.reference is not None)
    listed = ", ".join(registered) if registered else "none"
    return f"no model is registered as {name!r} in {models_dir_or_default(models_dir)} (registered: {listed})"
