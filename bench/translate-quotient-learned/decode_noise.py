"""Decode error on N(0, I) draws (sampling) of the bundled fives and sevens: the former default (unipc × 20, log-SNR
grid), × 16 untuned and the learned × 16 default, against unipc × 200.

Run from the repository root: python bench/translate-quotient-learned/decode_noise.py > .../decode-noise.md"""

import torch

from ddib.bridge import ode
from ddib.bridge.tuning import LEVELS, decode_on
from ddib.model.registry import load_domain_model

SOLVES = {
    "unipc × 20, log-SNR grid": ode.ODEOptions("unipc", 20, tuned=False),
    "unipc × 16, log-SNR grid": ode.ODEOptions("unipc", 16, tuned=False),
    "unipc × 16, learned": ode.ODEOptions("unipc", 16),
}
print("| model | solve | RMS levels | median image | worst image |\n|---|---|---|---|---|")
for domain in ("fives", "sevens"):
    model = load_domain_model(domain).diffusion
    z = torch.randn(64, *model.data_shape, generator=torch.Generator().manual_seed(123))
    reference = decode_on(model, z, ode.ODEOptions("unipc", 200, tuned=False))
    for name, options in SOLVES.items():
        error = (decode_on(model, z, options) - reference) * LEVELS
        per_image = error.pow(2).flatten(1).mean(1).sqrt()
        rms = error.pow(2).mean().sqrt()
        print(f"| {domain} | {name} | {rms:.3f} | {per_image.median():.3f} | {per_image.max():.3f} |")
