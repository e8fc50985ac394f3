"""Dual Diffusion Implicit Bridges (Su et al., ICLR 2023): unpaired translation with two diffusion models."""

__version__ = "0.1.0"


def run() -> None:
    """The `ddib` command: a Ctrl-C while torch is still importing is an interrupt too, not a traceback."""
    import sys

    try:
        from .cli import run as cli_run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    cli_run()
