"""`ddib` command line: thin typer commands that parse, show progress and call the library."""

from __future__ import annotations

import sys

from ..errors import DDIBError
from . import (
    bench_cmd,
    classifier_cmd,
    cycle_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    likelihood_cmd,
    models_cmd,
    perturb_cmd,
    plot_cmd,
    sample_cmd,
    train_cmd,
    translate_cmd,
)  # noqa: F401  (registers the commands)
from .app import app, console_err

try:  # recent typer vendors click as typer._click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import exceptions as click_exceptions
try:
    from typer.exceptions import Abort as TyperAbort
except ImportError:  # pragma: no cover
    TyperAbort = KeyboardInterrupt
ClickAbort = getattr(click_exceptions, "Abort", KeyboardInterrupt)


def error(message: str) -> None:
    console_err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every user-facing failure is one line on stderr and a non-zero exit code."""
    for stream in (sys.stdout, sys.stderr):  # log lines must reach a redirected file as they happen
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="ddib")
    except DDIBError as exc:
        error(str(exc).replace("[", r"\["))
        return 1
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return 2
    except click_exceptions.ClickException as exc:
        error(exc.format_message().replace("\n", " ").replace("[", r"\["))
        return exc.exit_code
    except (ClickAbort, TyperAbort, KeyboardInterrupt):
        console_err.print("interrupted")
        return 130
    return rv if isinstance(rv, int) else 0


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
