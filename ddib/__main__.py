"""`python -m ddib` (also what torchrun launches)."""

from . import run

run()
