"""Hue error of fives → sevens for any encoder/decoder pairing of cone checkpoints, on the first 24 held-out fives.

PYTHONPATH=. python experiments/colour-levers/pair_probe.py ../shared/data STEPS FIVES_RUN:SEVENS_RUN ... \
    >> experiments/colour-levers/pair_probe.log
"""

import sys

import torch

from ddib.bridge import ode
from ddib.color import digit_hue, hue_difference
from ddib.data.inputs import held_out_digits
from ddib.model import checkpoint as ckpt

torch.set_num_threads(1)
x = held_out_digits(sys.argv[1], "fives", 24)
options = ode.ODEOptions(steps=int(sys.argv[2]))
for pair in sys.argv[3:]:
    fives, sevens = (ckpt.load_model(run)[0].eval() for run in pair.split(":"))
    with torch.no_grad():
        out = ode.decode(sevens, ode.encode(fives, x, options), options)
    err = hue_difference(digit_hue(x)[0], digit_hue(out)[0])
    print(
        f"{pair} unipc × {options.steps}: hue error median {err.median():.1f}°, p90 {err.quantile(0.9):.1f}°, "
        f"above 30°: {(err > 30).sum().item()} of {len(err)}"
    )
