"""Per-image distance of fixed-step translations to unipc × 200 on `ddib bench translate`'s held-out images.

Usage: PYTHONPATH=. python bench/translate-bridge-tuned-16/per_image.py MODELS_DIR fives sevens 32
"""

import sys

import torch

from ddib.bridge import ode
from ddib.data import data_dir_or_default
from ddib.evaluation.evaluate import held_out_digits
from ddib.model.registry import load_domain_model

root, src, tgt, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(1)
S = load_domain_model(src, root, "cpu").diffusion
T = load_domain_model(tgt, root, "cpu").diffusion
x = held_out_digits(data_dir_or_default(None), src, n, seed=0)
ref = ode.translate(S, T, x, ode.ODEOptions("unipc", 200, tuned=False))
rows = {
    "x20": ode.ODEOptions("unipc", 20, tuned=False),
    "x16": ode.ODEOptions("unipc", 16, tuned=False),
    "x16 tuned": ode.ODEOptions("unipc", 16),
}
per = {}
for name, o in rows.items():
    y = ode.translate(S, T, x, o)
    per[name] = ((y - ref) * 127.5).pow(2).flatten(1).mean(1).sqrt()
    e = per[name]
    print(
        f"{name}: RMS {e.pow(2).mean().sqrt():.3f}, median image {e.median():.3f}, max image {e.max():.2f}, "
        f"RMS without worst {e.sort().values[:-1].pow(2).mean().sqrt():.3f}, images > 1 level {(e > 1).sum().item()}"
    )
worst = per["x16 tuned"].argsort(descending=True)[:5]
print("worst under x16 tuned:", [(i.item(), *(round(per[k][i].item(), 2) for k in rows)) for i in worst])
