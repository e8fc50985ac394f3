"""`--from` for `ddib translate`: the options that choose how the source is inferred when it is not given."""

from __future__ import annotations

import typer

from ..likelihood.source_inference import DEFAULT_LEVELS, DEFAULT_METHOD, METHODS

MethodOpt = typer.Option(
    DEFAULT_METHOD,
    "--method",
    help=f"Score used to infer or rank domains: {' | '.join(METHODS)} (band: the ELBO over mid noise levels only)",
)
LevelsOpt = typer.Option(DEFAULT_LEVELS, "--levels", min=1, help="Noise levels of the ELBO (band) estimate")
