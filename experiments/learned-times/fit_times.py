"""Learned evaluation times (S4S-Alt) on top of a joint bridge fit: the network told σ̄_i·e^{s_i} at node i.

Same data, reference, optimiser and validation as `ddib tune-solver --from fives --to sevens` (gradient); each
direction's k-th network evaluation is told its node's σ̄ shifted by a learned s_k (kept inside the schedule).
    OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/learned-times/fit_times.py STEPS ITERATIONS \
        MODELS_DIR OUT.json [--no-times]
MODELS_DIR holds exports of the bundled fives and sevens (`ddib export`); MNIST from DDIB_DATA_DIR.
"""

import json
import math
import sys
import time

import torch

from ddib.bridge import learned_solver, ode
from ddib.bridge.batching import in_batches
from ddib.bridge.grids import sigma_grid
from ddib.bridge.learned_solver import LearnedSolve
from ddib.bridge.solvers import corrected, exponential_multistep_pc
from ddib.bridge.tuning import LEVELS, decode_on, encode_on, rms, tuning_data
from ddib.data.domains import data_dir_or_default
from ddib.model.registry import load_domain_model


class Shifts(torch.nn.Module):
    """log(σ̄ told / node) of each evaluation of one solve, in solve order."""

    def __init__(self, steps: int, learn: bool):
        super().__init__()
        self.s = torch.nn.Parameter(torch.zeros(steps, dtype=torch.float64), requires_grad=learn)


def shifted_solve(model, x_bar, grid, solve: LearnedSolve, shifts: Shifts):
    """`unipc` through `grid` (solve order) with the network told σ̄·e^{s_k} at its k-th evaluation."""
    base, calls = ode.pf_ode_drift(model, [0]), [0]
    lo, hi = math.log(model.schedule.sigma_min), math.log(model.schedule.sigma_max)

    def drift(sigma_bar, x):
        k, calls[0] = calls[0], calls[0] + 1  # evaluations come in node order, one per node
        told = torch.exp((torch.log(sigma_bar.double()) + shifts.s[k]).clamp(lo, hi)).to(x.dtype)
        return base(told, x)

    return exponential_multistep_pc(drift, x_bar, grid.to(x_bar.dtype), adjust=corrected(solve.corrections()))


def main():
    steps, iterations, models_dir, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    learn = "--no-times" not in sys.argv
    torch.set_num_threads(1)
    src = load_domain_model("fives", models_dir, "cpu").diffusion
    tgt = load_domain_model("sevens", models_dir, "cpu").diffusion
    data = tuning_data("fives", src, 128, 32, None, 0, data_dir_or_default(None))
    ref = ode.ODEOptions("unipc", 200, tuned=False)  # the converged solve, on its untuned grid
    images = {False: data.tune_images, True: data.val_images}
    t0 = time.time()
    with torch.no_grad():
        converged = {v: decode_on(tgt, encode_on(src, x, ref), ref) for v, x in images.items()}
    enc, dec = (LearnedSolve(m, sigma_grid(m, steps, math.inf)) for m in (src, tgt))
    enc_s, dec_s = Shifts(steps, learn), Shifts(steps, learn)
    (a0s, a1s), (a0t, a1t) = src.schedule.alpha_ends, tgt.schedule.alpha_ends

    def translation(x):
        z = shifted_solve(src, src.to_model_space(x) / a0s, enc.grid(), enc, enc_s) * a1s
        return tgt.to_images(shifted_solve(tgt, z / a1t, dec.grid().flip(0), dec, dec_s) * a0t, None)

    def error(validation):
        with torch.no_grad():
            return LEVELS * rms(in_batches(translation, images[validation], 64), converged[validation])

    def loss(idx):
        return (LEVELS * (translation(images[False][idx]) - converged[False][idx])).square().mean()

    log = lambda k, best: print(k, f"{best:.4f}", f"{time.time() - t0:.0f}s", flush=True)  # noqa: E731
    fit = learned_solver.fit([enc, dec, enc_s, dec_s], loss, 128, lambda: error(True), iterations, 32, 0.02,
                             on_step=log)  # fmt: skip
    print(fit, flush=True)
    record = {"fit": vars(fit), "encode": enc.export(), "decode": dec.export(), "encode_shifts": enc_s.s.tolist(),
              "decode_shifts": dec_s.s.tolist()}  # fmt: skip
    with open(out, "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
