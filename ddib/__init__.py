"""Dual Diffusion Implicit Bridges (Su et al., ICLR 2023): unpaired translation with two diffusion models."""

__version__ = "0.1.0"

# The Python API (`ddib.api`), imported on first use so that `ddib --help` does not wait for torch.
_API = ("Latent", "Progress", "decode", "encode", "likelihoods", "load", "sample", "translate")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ddib' has no attribute {name!r}")


def run() -> None:
    """The `ddib` command: a Ctrl-C while torch is still importing is an interrupt too, not a traceback."""
    import sys

    try:
        from .cli import run as cli_run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    cli_run()
