"""Dual Diffusion Implicit Bridges (Su et al., ICLR 2023): unpaired translation with two diffusion models."""

__version__ = "0.1.0"
