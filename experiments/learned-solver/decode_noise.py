"""Decode error on N(0, I) draws (sampling) of fives and sevens: the former default (unipc × 20, log-SNR grid),
× 16 untuned and, where the models carry them, the learned × 16, × 18 (the default) and × 20 decodes; against
unipc × 200.

Run from the repository root: python experiments/learned-solver/decode_noise.py [MODELS_DIR] > OUT.md
(without MODELS_DIR, the bundled models: decode-noise.md; with copies holding every learned entry,
`with_entries.py`: decode-noise-all.md)."""

import sys

import torch

from ddib.bridge import ode
from ddib.bridge.grids import tuned_grid
from ddib.bridge.tuning import LEVELS, decode_on
from ddib.model.registry import load_domain_model

SOLVES = {
    "unipc × 20, log-SNR grid": ode.ODEOptions("unipc", 20, tuned=False),
    "unipc × 16, log-SNR grid": ode.ODEOptions("unipc", 16, tuned=False),
    "unipc × 16, learned": ode.ODEOptions("unipc", 16),
    "unipc × 18, learned": ode.ODEOptions("unipc", 18),
    "unipc × 20, learned": ode.ODEOptions("unipc", 20),
}
models_dir = sys.argv[1] if len(sys.argv) > 1 else None
print("| model | solve | RMS levels | median image | worst image |\n|---|---|---|---|---|")
for domain in ("fives", "sevens"):
    model = load_domain_model(domain, models_dir).diffusion
    z = torch.randn(64, *model.data_shape, generator=torch.Generator().manual_seed(123))
    reference = decode_on(model, z, ode.ODEOptions("unipc", 200, tuned=False))
    for name, options in SOLVES.items():
        if options.tuned and tuned_grid(model, "unipc", options.steps, "decode") is None:
            continue  # no learned decode at this step count
        error = (decode_on(model, z, options) - reference) * LEVELS
        per_image = error.pow(2).flatten(1).mean(1).sqrt()
        rms = error.pow(2).mean().sqrt()
        print(f"| {domain} | {name} | {rms:.3f} | {per_image.median():.3f} | {per_image.max():.3f} |")
