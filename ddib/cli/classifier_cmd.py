"""`ddib train-classifier`: train the evaluation digit classifier; by default it replaces the bundled one."""

from __future__ import annotations

import time

import typer

from ..data import data_dir_or_default
from ..evaluation import classifier as clf
from ..utils import resolve_device
from .app import app, console
from .options import DataDirOpt, DeviceOpt, SeedOpt


@app.command("train-classifier")
def train_classifier_command(
    data_dir: str | None = DataDirOpt,
    epochs: int = typer.Option(5, "--epochs", min=1, help="Passes over the MNIST train split"),
    batch_size: int = typer.Option(128, "--batch-size", min=1, help="Images per step"),
    seed: int = SeedOpt,
    out: str | None = typer.Option(None, "--out", help=f"Output folder [default: {clf.BUNDLED_DIR}]"),
    device: str = DeviceOpt,
) -> None:
    """Train the colour-invariant digit classifier on MNIST train, report MNIST test accuracy, save it."""
    data = data_dir_or_default(data_dir)
    dev = resolve_device(device)
    out_dir = out or str(clf.BUNDLED_DIR)
    console.print(
        f"training the digit classifier on MNIST train ({data}): {epochs} epochs, batch {batch_size}, device {dev}"
    )

    def report(s: clf.EpochStats) -> None:
        console.print(
            f"epoch {s.epoch}/{s.epochs}  loss {s.loss:.4f}  train acc {s.train_accuracy:.2%}  ({s.seconds:.0f} s)"
        )

    start = time.perf_counter()
    model = clf.train_classifier(data, epochs=epochs, batch_size=batch_size, seed=seed, device=dev, callback=report)
    train_seconds = time.perf_counter() - start
    acc = clf.test_accuracy(model, data)
    metadata = {
        "test_accuracy": round(acc, 6),
        "test_split": "MNIST test, 10000 grey digits resized to 32x32",
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "parameters": clf.parameter_count(model),
        "train_seconds": round(train_seconds, 1),
        "device": str(dev),
    }
    clf.save_classifier(model, out_dir, metadata)
    console.print(f"MNIST test accuracy {acc:.2%}; saved to {out_dir}")
