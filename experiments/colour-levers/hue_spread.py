"""How far pixel hues spread around the digit's hue: cone fives samples against held-out 8-bit fives.

PYTHONPATH=. python experiments/colour-levers/hue_spread.py ../shared/data > experiments/colour-levers/hue_spread.log
"""

import sys

import torch

from ddib.bridge import ode
from ddib.color import digit_hue, hue_difference, rgb_to_hue_value
from ddib.data.inputs import held_out_digits
from ddib.model import checkpoint as ckpt


def spread(x):
    rgb = ((x.float() + 1) / 2).clamp(0, 1)
    hue, value = rgb_to_hue_value(rgb)
    mean, _ = digit_hue(x)
    out = []
    for i in range(len(x)):
        m = value[i] >= 0.5
        d = hue_difference(hue[i][m], mean[i])
        out.append((d * value[i][m]).sum() / value[i][m].sum())
    return torch.stack(out)


m = ckpt.load_model("runs/levers/cone@1000/fives")[0].eval()
s = ode.sample(m, 32, torch.Generator().manual_seed(0))
x = held_out_digits(sys.argv[1], "fives", 32)
for name, v in (("samples", spread(s)), ("held-out", spread(x))):
    print(f"{name} value-weighted mean |pixel hue - digit hue|: median {v.median():.2f} p90 {v.quantile(0.9):.2f}")
