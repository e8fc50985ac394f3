"""Latent perturbations between encode and decode: the ops, and running experiments with them."""
