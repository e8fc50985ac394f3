"""`--from` for `ddib translate`: given, the only compatible domain, or inferred by comparing likelihoods."""

from __future__ import annotations

import torch
import typer

from ..errors import DDIBError
from ..likelihood.source_inference import METHODS, rank, score_images
from ..model.registry import ModelLocation, load_domain_model, source_candidates
from .app import console

# Inputs scored to infer the source (the first ones, in order): enough for a sharp margin, bounded cost.
INFER_INPUTS = 16
DEFAULT_METHOD = "band"  # as accurate as 64-level ELBO at 16 levels, fewer undecided (README, bench identify)
DEFAULT_LEVELS = 16

MethodOpt = typer.Option(
    DEFAULT_METHOD,
    "--method",
    help=f"Score used to infer or rank domains: {' | '.join(METHODS)} (band: the ELBO over mid noise levels only)",
)
LevelsOpt = typer.Option(DEFAULT_LEVELS, "--levels", min=1, help="Noise levels of the ELBO (band) estimate")


def choose_source(target: ModelLocation, source, target_model, target_kind, probe_images: torch.Tensor | None,
                  models_dir, dev, method, levels, probes=2, symmetry="auto"):  # fmt: skip
    """(name, model, config, location) of the source domain; prints how it was chosen when it was not given.

    `probe_images` are the input images already read (uint8, None without any); the first INFER_INPUTS are scored.
    """
    names = source_candidates(target, source, models_dir)
    target = target.domain
    if source is not None:
        return (source, *load_domain_model(source, models_dir, dev, symmetry))
    loaded = {name: load_domain_model(name, models_dir, dev, symmetry) for name in names}
    fits = {n: v for n, v in loaded.items() if v[1].model.kind == target_kind
            and tuple(v[0].data_shape) == tuple(target_model.data_shape)}  # fmt: skip
    if not fits:
        raise DDIBError(f"no trained domain has {target}'s data shape {tuple(target_model.data_shape)}; "
                        f"name the source with --from (found: {', '.join(names)})")  # fmt: skip
    if len(fits) == 1:
        name = next(iter(fits))
        console.print(f"--from not given: using {name}, the only other trained domain of this shape")
        return (name, *fits[name])
    listed = ", ".join(fits)
    if probe_images is None or target_kind != "unet":
        raise DDIBError(f"name the source domain with --from (candidates: {listed}); it is inferred from "
                        "input images only")  # fmt: skip
    u8 = probe_images[:INFER_INPUTS]
    models = {n: v[0] for n, v in fits.items()}
    scores = score_images(models, u8, probes=probes, rtol=1e-4, atol=1e-4, device=dev, method=method, levels=levels)
    r = rank(scores)
    ranking = " < ".join(f"{d} {bpd:.3f}" for d, bpd, _ in r.order)
    console.print(f"--from inferred from {len(u8)} input(s) by {method} bits/dim: {ranking}")
    if not r.decisive:
        raise DDIBError(f"cannot tell the source domain: {r.order[0][0]} leads {r.order[1][0]} by {r.margin:.4f} ± "
                        f"{r.margin_stderr:.4f} bits/dim, within 2 standard errors; name it with --from")  # fmt: skip
    console.print(f"using {r.best} (margin {r.margin:.3f} ± {r.margin_stderr:.3f} bits/dim over {r.order[1][0]})")
    return (r.best, *fits[r.best])
