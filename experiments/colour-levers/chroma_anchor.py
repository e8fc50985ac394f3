"""Hue error of fives → sevens when the latent's mean chroma vector is set to a fixed length along its own direction
before decoding (a probe of a latent op; hue only, the first 24 held-out fives, unipc × 20).

PYTHONPATH=. python experiments/colour-levers/chroma_anchor.py ../shared/data FIVES_RUN:SEVENS_RUN ... \
    >> experiments/colour-levers/chroma_anchor.log
"""

import sys

import torch

from ddib.bridge import ode
from ddib.color import digit_hue, hue_difference
from ddib.data.inputs import held_out_digits
from ddib.model import checkpoint as ckpt

torch.set_num_threads(1)
x = held_out_digits(sys.argv[1], "fives", 24)
for pair in sys.argv[2:]:
    fives, sevens = (ckpt.load_model(run)[0].eval() for run in pair.split(":"))
    with torch.no_grad():
        z = ode.encode(fives, x)
        mean = z[:, 1:].mean((2, 3))
        for length in (None, 0.1, 0.15, 0.25):
            anchored = z.clone()
            if length is not None:
                shift = (length / mean.norm(dim=1, keepdim=True) - 1) * mean
                anchored[:, 1:] += shift[:, :, None, None]
            err = hue_difference(digit_hue(x)[0], digit_hue(ode.decode(sevens, anchored))[0])
            print(
                f"{pair} mean chroma length {'as encoded' if length is None else length}: hue error median "
                f"{err.median():.1f}°, p90 {err.quantile(0.9):.1f}°, above 30°: {(err > 30).sum().item()} of {len(err)}"
            )
