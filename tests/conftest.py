"""Shared fixtures: tiny image domains made on the fly, tiny trained models, the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Tiny test models gain nothing from threads, and threads collapse when the machine is busy.
torch.set_num_threads(1)


def mnist_dir() -> str | None:
    """The MNIST data dir when present (CI points DDIB_DATA_DIR at ../shared/data)."""
    for cand in (os.environ.get("DDIB_DATA_DIR"), str(REPO.parent / "shared" / "data")):
        if cand and (Path(cand) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
            # Absolute: tests run the CLI from tmp dirs, where a relative ../shared/data would miss.
            return str(Path(cand).resolve())
    return None


needs_mnist = pytest.mark.skipif(mnist_dir() is None, reason="MNIST not available (set DDIB_DATA_DIR)")


def make_blob_images(folder: Path, n: int, hue_rgb: tuple[int, int, int], seed: int, size: int = 16) -> Path:
    """n PNGs of one coloured blob at a random position on black: a tiny, learnable image domain."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.zeros((size, size, 3), dtype=np.uint8)
        cy, cx = rng.integers(4, size - 4, size=2)
        yy, xx = np.mgrid[:size, :size]
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        img[mask] = hue_rgb
        Image.fromarray(img).save(folder / f"img{i:03d}.png")
    return folder


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300):
    """Run `python -m ddib ARGS` in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    full_env.pop("DDIB_MODELS_DIR", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ddib", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A models dir with two tiny 16×16 domains, `reds` and `blues`, trained briefly through the CLI."""
    root = tmp_path_factory.mktemp("tiny")
    models = root / "models"
    for name, rgb, seed in (("reds", (230, 30, 30), 1), ("blues", (30, 30, 230), 2)):
        data = make_blob_images(root / name, 24, rgb, seed)
        r = run_cli(
            "train",
            "--domain",
            name,
            "--data",
            str(data),
            "--models-dir",
            str(models),
            "--model-size",
            "tiny",
            "--image-size",
            "16",
            "--steps",
            "30",
            "--batch-size",
            "8",
            "--lr",
            "2e-3",
            "--sample-every",
            "0",
        )
        assert r.returncode == 0, r.stderr
    return models
