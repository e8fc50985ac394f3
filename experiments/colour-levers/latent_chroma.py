"""How strongly a cone model's latent carries the digit's hue: the angle and size of the latent's mean chroma vector.

PYTHONPATH=. python experiments/colour-levers/latent_chroma.py ../shared/data RUN... \
    > experiments/colour-levers/latent_chroma.log
(each RUN a folder with fives/ and sevens/ cone models; 16 held-out digits of each domain, encoded with its model)
"""

import sys

import torch

from ddib.bridge import ode
from ddib.color import chroma_angle, digit_hue, hue_difference
from ddib.data.inputs import held_out_digits
from ddib.model import checkpoint as ckpt

torch.set_num_threads(1)
for run in sys.argv[2:]:
    for domain in ("fives", "sevens"):
        x = held_out_digits(sys.argv[1], domain, 16)
        model = ckpt.load_model(f"{run}/{domain}")[0].eval()
        with torch.no_grad():
            z = ode.encode(model, x)
        length = z[:, 1:].mean((2, 3)).norm(dim=1)
        offset = hue_difference(torch.rad2deg(chroma_angle(z)), digit_hue(x)[0])
        print(
            f"{run}/{domain}: latent chroma offset from the digit's hue median {offset.median():.0f}° "
            f"(min {offset.min():.0f}°, max {offset.max():.0f}°), mean chroma length {length.mean():.3f} "
            f"(its mean for an N(0, I) latent: {(torch.pi / 2 / x[0, 0].numel()) ** 0.5:.3f})"
        )
