"""`ddib translate` and `ddib decode`: the DDIB bridge from the command line."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import typer

from .. import ode
from ..errors import DDIBError
from ..images import image_grid, load_image, save_png, to_pil, to_unit_range
from ..latents import load_latents, save_latents
from ..outputs import check_outputs, plan_outputs
from ..registry import load_domain_model, pick_source
from ..utils import resolve_device
from .app import app, console
from .options import AtolOpt, DeviceOpt, ModelsDirOpt, RtolOpt, SolverOpt, StepsOpt, ode_options
from .progress import bar

DEFAULT_BATCH = 64


def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[a0, b0, a1, b1, …]: pairs side by side in a grid."""
    return torch.stack([a, b], dim=1).flatten(0, 1)


@app.command("translate")
def translate_command(
    inputs: list[Path] | None = typer.Argument(
        None, help="Image files and/or folders (none: sample -n sources)"
    ),
    to: str = typer.Option(..., "--to", help="Target domain"),
    source: str | None = typer.Option(
        None, "--from", help="Source domain (default: the only other trained one)"
    ),
    out: Path | None = typer.Option(None, "--out", help="Output PNG (one input only)"),
    out_dir: Path | None = typer.Option(
        None, "--out-dir", help="Output folder [default: next to each input]"
    ),
    grid: Path | None = typer.Option(None, "--grid", help="Also write a side-by-side source → target sheet"),
    save_latent: Path | None = typer.Option(
        None, "--save-latent", help="Write the latents to this .safetensors"
    ),
    n: int = typer.Option(8, "-n", "--num", min=1, help="With no inputs: how many sources to sample"),
    solver: str = SolverOpt,
    steps: int = StepsOpt,
    rtol: float = RtolOpt,
    atol: float = AtolOpt,
    batch_size: int = typer.Option(DEFAULT_BATCH, "--batch-size", min=1, help="Images per ODE solve"),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled sources when no inputs are given"),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
) -> None:
    """Translate images: encode with the source model's ODE (t 0→1), decode with the target's (t 1→0)."""
    opts = ode_options(solver, steps, rtol, atol)
    src_name, auto = pick_source(to, source, models_dir)
    if auto:
        console.print(f"--from not given: using {src_name}, the only other trained domain")
    dev = resolve_device(device)
    src_model, src_cfg, src_loc = load_domain_model(src_name, models_dir, dev)
    tgt_model, tgt_cfg, tgt_loc = load_domain_model(to, models_dir, dev)
    ode.check_compatible(src_model, tgt_model)
    if src_cfg.model.kind != "unet":
        raise DDIBError(f"{src_name} is a point domain; `ddib translate` here takes images")
    channels, size = src_cfg.model.channels, src_cfg.model.image_size

    if inputs:
        pairs = plan_outputs(inputs, f"to-{to}", out, out_dir)
        sampled = None
    else:
        if out is not None:
            raise DDIBError("--out needs one input image; with no inputs use --out-dir or --grid")
        folder = out_dir or Path(f"{src_name}-to-{to}")
        pairs = [(Path(f"sample-{i:04d}"), folder / f"{src_name}-{i:04d}-to-{to}.png") for i in range(n)]
        check_outputs(pairs)
        gen = torch.Generator().manual_seed(seed)
        sampled = ode.sample(src_model, n, gen, opts, device=dev).cpu()
        console.print(f"sampled {n} {src_name} sources (seed {seed})")

    stats = ode.SolveStats()
    sources, results, latents = [], [], []
    t0 = time.perf_counter()
    with bar("translate") as progress:
        task = progress.add_task(f"{src_name} → {to}", total=len(pairs))
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            if sampled is None:
                x = to_unit_range(torch.stack([load_image(p, size, channels) for p, _ in chunk]))
            else:
                x = sampled[start : start + batch_size]
            z = ode.encode(src_model, x.to(dev), opts, stats)
            y = ode.decode(tgt_model, z, opts, stats).cpu()
            for (_, dst), img in zip(chunk, y, strict=True):
                save_png(to_pil(img), dst)
            if grid is not None:
                sources.append(x.cpu())
                results.append(y)
            if save_latent is not None:
                latents.append(z.cpu())
            progress.advance(task, len(chunk))
    seconds = time.perf_counter() - t0
    if grid is not None:
        save_png(image_grid(interleave(torch.cat(sources), torch.cat(results)), nrow=8), grid)
        console.print(f"grid: {grid}")
    if save_latent is not None:
        meta = {"source": src_name, "solver": opts.describe(), "names": [str(p) for p, _ in pairs]}
        save_latents(save_latent, torch.cat(latents), meta)
        console.print(f"latents: {save_latent}")
    batches = -(-len(pairs) // batch_size)
    nfe = stats.nfe / batches
    where = pairs[0][1] if len(pairs) == 1 else pairs[0][1].parent
    console.print(
        f"translated {len(pairs)} images {src_name} ({src_loc.origin}) → {to} ({tgt_loc.origin}) with "
        f"{opts.describe()}: {nfe:.0f} NFE per image, {seconds:.1f}s, {len(pairs) / seconds:.1f} images/s → {where}"
    )


@app.command("decode")
def decode_command(
    latent: Path = typer.Argument(..., help="Latent .safetensors written by `ddib translate --save-latent`"),
    to: str = typer.Option(..., "--to", help="Domain whose model decodes"),
    out: Path | None = typer.Option(None, "--out", help="Grid PNG [default: <latent>-<domain>.png]"),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Write one PNG per latent into this folder"),
    solver: str = SolverOpt,
    steps: int = StepsOpt,
    rtol: float = RtolOpt,
    atol: float = AtolOpt,
    batch_size: int = typer.Option(DEFAULT_BATCH, "--batch-size", min=1, help="Latents per ODE solve"),
    device: str = DeviceOpt,
    models_dir: str | None = ModelsDirOpt,
) -> None:
    """Decode saved latents with a domain's model (ODE t 1→0)."""
    if out is not None and out_dir is not None:
        raise DDIBError("give either --out or --out-dir, not both")
    opts = ode_options(solver, steps, rtol, atol)
    z, meta = load_latents(latent)
    dev = resolve_device(device)
    model, _, loc = load_domain_model(to, models_dir, dev)
    if tuple(z.shape[1:]) != tuple(model.data_shape):
        raise DDIBError(
            f"latents have shape {tuple(z.shape[1:])} but the {to} model expects {tuple(model.data_shape)}"
        )
    stats = ode.SolveStats()
    t0 = time.perf_counter()
    x = torch.cat(
        [
            ode.decode(model, z[i : i + batch_size].to(dev), opts, stats).cpu()
            for i in range(0, len(z), batch_size)
        ]
    )
    seconds = time.perf_counter() - t0
    if out_dir is not None:
        for i, img in enumerate(x):
            save_png(to_pil(img), out_dir / f"{latent.stem}-{i:04d}-{to}.png")
        where = f"{out_dir}/"
    else:
        out = out or latent.with_name(f"{latent.stem}-{to}.png")
        save_png(image_grid(x, nrow=8), out)
        where = str(out)
    batches = -(-len(z) // batch_size)
    console.print(
        f"decoded {len(z)} latents (from {meta.get('source', '?')}) with {to} ({loc.origin}), {opts.describe()}: "
        f"{stats.nfe / batches:.0f} NFE per image, {seconds:.1f}s → {where}"
    )
