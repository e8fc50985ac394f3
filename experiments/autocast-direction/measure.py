"""How far bf16 / fp16 autocast moves a DDIB translation when it runs in the encode, the decode or both solves.

Prints one row per (pair, precision, where): the translation's distance to the fp32 one in 8-bit levels (RMS over
the batch, median image RMS, worst pixel). `ddib` itself autocasts decodes only; this script lifts that rule for
the encode rows by patching the check FastNet asks.
"""

from __future__ import annotations

import argparse

import torch

import ddib
import ddib.model.speed as speed
from ddib.bridge import ode
from ddib.io.images import to_uint8
from ddib.model.speed import SpeedOptions, accelerate


def levels(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    d = to_uint8(y).float() - to_uint8(ref).float()
    per_image = d.pow(2).mean(dim=(1, 2, 3)).sqrt()
    return d.pow(2).mean().sqrt().item(), per_image.median().item(), d.abs().max().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", action="append", default=None, help="SOURCE,TARGET (repeatable) [fives,sevens]")
    p.add_argument("-n", type=int, default=32, help="sampled sources")
    p.add_argument("--models-dir", default=None)
    args = p.parse_args()
    print("| pair | autocast | in | RMS | median image | max |")
    print("|---|---|---|---|---|---|")
    for pair in args.pair or ["fives,sevens"]:
        src_name, tgt_name = pair.split(",")
        src = ddib.load(src_name, models_dir=args.models_dir)
        tgt = ddib.load(tgt_name, models_dir=args.models_dir)
        s, t = ode.bridge_ends(src.diffusion, tgt.diffusion)
        opts = ode.resolve_steps(ode.ODEOptions(), s, t)
        x = ode.sample(src.diffusion, args.n, torch.Generator().manual_seed(0), opts)
        z = ode.encode_latent(s, x, opts)
        ref = ode.decode(t, z, opts)
        for name in ("bf16", "fp16"):
            fs, ft = (accelerate(m, SpeedOptions(**{name: True})) for m in (s, t))
            real = speed.reduced_precision_allowed
            speed.reduced_precision_allowed = lambda: True  # autocast the encode too
            try:
                z_low = ode.encode_latent(fs, x, opts)
            finally:
                speed.reduced_precision_allowed = real
            rows = {"encode": ode.decode(t, z_low, opts), "decode (ddib)": ode.decode(ft, z, opts),
                    "both": ode.decode(ft, z_low, opts)}  # fmt: skip
            for where, y in rows.items():
                rms, med, mx = levels(y, ref)
                print(f"| {src_name} → {tgt_name} | {name} | {where} | {rms:.2f} | {med:.2f} | {mx:.0f} |")


if __name__ == "__main__":
    main()
