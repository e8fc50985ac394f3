"""The typer application object and shared consoles."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

app = typer.Typer(
    name="ddib",
    help="Dual Diffusion Implicit Bridges: unpaired image-to-image translation with two diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Off a terminal (logs, pipes) rich would assume 80 columns and truncate tables; give them room.
_width = None if sys.stdout.isatty() else 200
console = Console(highlight=False, soft_wrap=True, width=_width)
console_err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width)
