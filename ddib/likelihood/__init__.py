"""Likelihoods under a domain's model: the exact ODE likelihood, the ELBO, and inferring an image's source domain
from them."""
