"""Hue error of the cone pair on 8-bit coloured fives against the same fives re-coloured in float (exactly one hue).

PYTHONPATH=. python experiments/colour-levers/one_hue.py ../shared/data > experiments/colour-levers/one_hue.log
"""

import sys

from ddib.bridge import ode
from ddib.color import colorize, digit_hue, hue_difference
from ddib.data.inputs import held_out_digits
from ddib.model import checkpoint as ckpt

x = held_out_digits(sys.argv[1], "fives", 40)
src = ckpt.load_model("runs/levers/cone@1000/fives")[0].eval()
tgt = ckpt.load_model("runs/levers/cone@1000/sevens")[0].eval()
hue, _ = digit_hue(x)
grey = ((x + 1) / 2).max(1).values
exact = colorize(grey, hue) * 2 - 1
for name, inp in (("8-bit", x), ("float, one hue", exact)):
    out = ode.translate(src, tgt, inp)
    err = hue_difference(digit_hue(inp)[0], digit_hue(out)[0])
    print(f"{name} median {err.median():.2f} p90 {err.quantile(0.9):.2f} max {err.max():.2f}")
