"""`python -m ddib` (also what torchrun launches)."""

from .cli import run

run()
