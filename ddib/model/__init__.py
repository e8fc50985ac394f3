"""A domain's model: the networks, the diffusion wrapper (schedule, parameterisation, symmetry), checkpoints,
where models are found, and how fast the network runs."""
