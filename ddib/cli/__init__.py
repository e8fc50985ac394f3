"""`ddib` command line: thin typer commands that parse, show progress and call the library."""

from __future__ import annotations

import functools
import sys

from ..errors import DDIBError
from ..train.distributed import several_processes
from ..train.interrupts import Interrupted

# Registering the commands; the import order is the order of `ddib --help`, a user's order.
# isort: off
from . import train_cmd, sample_cmd, translate_cmd, perturb_cmd, evaluate_cmd  # noqa: F401
from . import likelihood_cmd, tune_cmd, models_cmd, export_cmd, demo_cmd, plot_cmd  # noqa: F401
from . import cycle_cmd, classifier_cmd, bench_cmd, bench_quality_cmd  # noqa: F401

# isort: on
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


class _Stopped(Exception):
    """A KeyboardInterrupt carried past typer, which would turn it into a silent exit code 130."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__()
        self.interrupt = interrupt


def _carry_interrupts(typer_app, prefix: str = "ddib", sharding: str | None = None) -> None:
    """Wrap every command so that an interrupt reaches main() with its detail and exit code."""
    if sharding is None:
        names = [info.name for info in typer_app.registered_commands if _shards(info.callback)]
        quoted = [f"`{prefix} {n}`" for n in names]
        sharding = " and ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
    for info in typer_app.registered_commands:
        if info.callback is not None and not getattr(info.callback, "_carries_interrupts", False):
            info.callback = _carrying(info.callback, f"{prefix} {info.name or info.callback.__name__}", sharding)
    for group in typer_app.registered_groups:
        name = group.name or group.typer_instance.info.name
        _carry_interrupts(group.typer_instance, f"{prefix} {name}", sharding)


def _shards(callback) -> bool:
    return getattr(callback, "shards_across_processes", False)


def _carrying(callback, name: str, sharding: str):
    @functools.wraps(callback)
    def wrapped(*args, **kwargs):
        # Under torchrun every process runs the command: one that does not split its work would repeat it and
        # race the others on its output files.
        if several_processes() and not _shards(callback):
            raise DDIBError(f"`{name}` runs in one process; under torchrun only {sharding} split their work: "
                            "run it without torchrun")  # fmt: skip
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt as exc:
            raise _Stopped(exc) from None

    wrapped._carries_interrupts = True
    return wrapped


def error(message: str) -> None:
    console_err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every user-facing failure is one line on stderr and a non-zero exit code."""
    for stream in (sys.stdout, sys.stderr):  # log lines must reach a redirected file as they happen
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)
    _carry_interrupts(app)
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
    except _Stopped as stopped:
        return interrupted(stopped.interrupt)
    except (ClickAbort, TyperAbort, KeyboardInterrupt) as exc:
        return interrupted(exc)
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise
        error(f"out of memory: {_first_line(exc)}; try a smaller --batch-size, or fewer images".replace("[", r"\["))
        return 1
    except OSError as exc:  # a read or write that the library did not expect to fail (disk full, permissions)
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or exc}".replace("[", r"\["))
        return 1
    return rv if isinstance(rv, int) else 0


def _out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA OutOfMemoryError, its CPU allocator's failure, or Python's MemoryError: a batch too large for
    the device, not a bug (any other RuntimeError is one, and keeps its traceback)."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", getattr(torch.cuda, "OutOfMemoryError", MemoryError))
    return isinstance(exc, (MemoryError, oom)) or "can't allocate memory" in str(exc)


def _first_line(exc: BaseException) -> str:
    """The allocator's own words, without the enforce-fail prefix: 'you tried to allocate N bytes'."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split("can't allocate memory: ")[-1].split(". GPU ")[0]  # CUDA's: "... Tried to allocate 2.00 GiB"


def interrupted(exc: BaseException) -> int:
    """One line and the shell's status for a signal: 130 for Ctrl-C (128 + the signal's number)."""
    detail = exc.detail if isinstance(exc, Interrupted) else ""
    console_err.print(f"interrupted {detail}".strip(), markup=False)
    return exc.exit_code if isinstance(exc, Interrupted) else 130


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
