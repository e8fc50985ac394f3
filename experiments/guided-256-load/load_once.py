"""Load a guided-diffusion checkpoint as one of its classes, evaluate ε̂ once at 256×256, batch 1, and print the
seconds and the process's peak resident memory."""

import argparse
import resource
import time

import torch

import ddib

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="the .pt file (its flags JSON beside it)")
    checkpoint = parser.parse_args().checkpoint
    t0 = time.perf_counter()
    model = ddib.load(f"{checkpoint}:260")
    t1 = time.perf_counter()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.diffusion.eps(x, torch.tensor([0.5]))
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(f"load {t1 - t0:.1f} s, one evaluation {t2 - t1:.1f} s, peak resident {peak:.2f} GB")
