"""The bundled RGB pair (fives-rgb, sevens-rgb): a model of the fives and of the sevens, beside the hue pair."""

import csv
import json
import re

import torch

from ddib.bridge import ode
from ddib.data.colored_mnist import colored_mnist
from ddib.evaluation.classifier import load_classifier, predict
from ddib.io.images import to_unit_range
from ddib.model import registry
from ddib.train.recipe import warm_start

from .conftest import mnist_dir, needs_mnist, run_cli


def test_the_rgb_pair_is_bundled_as_models_of_the_fives_and_sevens():
    for name, digits in (("fives-rgb", "fives"), ("sevens-rgb", "sevens")):
        m = registry.load_domain_model(name, models_dir="/nonexistent")
        assert m.location.origin == "bundled" and m.digits == digits and m.data_shape == (3, 32, 32)
        assert m.diffusion.config.symmetry == "rgb-cyclic" and m.diffusion.config.quotient == "none"
        assert m.diffusion.default_steps == {"unipc": 20}
        assert registry.load_domain_model(digits, models_dir="/nonexistent").digits == digits


def test_source_inference_keeps_to_the_pair_of_the_target():
    for target in ("sevens", "sevens-rgb"):
        loc = registry.find_model(target, "/nonexistent")
        assert "fives-rgb" not in registry.source_candidates(loc, None, "/nonexistent")  # named, never inferred
        assert "sevens" not in registry.source_candidates(loc, None, "/nonexistent")  # the target's own data
    assert registry.source_candidates(registry.find_model("sevens", "/nonexistent"), "fives-rgb") == ["fives-rgb"]


def test_likelihoods_weigh_the_rgb_pair_only_where_named():
    from ddib.cli.likelihood_cmd import _load_models

    named = {m.domain for m in registry.domain_models("/nonexistent")}
    assert {"fives", "sevens"} <= named and not {"fives-rgb", "sevens-rgb"} & named
    assert set(_load_models(None, "/nonexistent", "cpu")) == {"fives", "sevens"}  # one quotient, no mixing
    assert set(_load_models(["fives-rgb", "sevens-rgb"], "/nonexistent", "cpu")) == {"fives-rgb", "sevens-rgb"}


def test_models_lists_the_rgb_pair(tmp_path):
    r = run_cli("models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("fives-rgb", "sevens-rgb"):
        assert name in r.stdout


def test_a_run_warm_starts_from_a_bundled_model_by_name():
    cfg, _ = registry.ckpt.read_config(registry.BUNDLED_DIR / "fives-rgb")
    started, weights = warm_start(cfg, "fives-rgb")
    assert started.init["path"] == "fives-rgb" and started.init["trained_steps"] == "2400"
    assert weights.keys() == registry.load_domain_model("fives-rgb").diffusion.net.state_dict().keys()


@needs_mnist
def test_the_rgb_pair_translates_held_out_fives_into_sevens_that_keep_their_colour():
    images, _ = colored_mnist(mnist_dir(), 5, "test")
    x = to_unit_range(images[:4])
    opts = ode.ODEOptions("unipc", steps=10)
    rgb = [registry.load_domain_model(n, symmetry="none").diffusion for n in ("fives-rgb", "sevens-rgb")]
    hue = [registry.load_domain_model(n, symmetry="none").diffusion for n in ("fives", "sevens")]
    with torch.no_grad():
        y = ode.translate(*rgb, x, opts)
        y_hue = ode.translate(*ode.bridge_ends(*hue), x, opts)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - y_hue).abs().mean() > 0.01  # another pair of models, another translation
    labels, _ = predict(load_classifier(), y)
    assert (labels == 7).sum() >= 3


@needs_mnist
def test_perturb_and_evaluate_read_the_rgb_pair_as_fives_and_sevens(tmp_path):
    common = ["--from", "fives-rgb", "--to", "sevens-rgb", "--steps", "4", "--symmetry", "none"]
    env = {"DDIB_DATA_DIR": mnist_dir()}
    r = run_cli("perturb", *common, "-n", "2", "--op", "noise", "--coef", "0.1", "--out", str(tmp_path / "p.png"),
                cwd=tmp_path, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2 held-out fives (MNIST test split" in r.stdout and "read as sevens-rgb" in r.stdout
    assert re.search(r"translation \(no perturbation\).*\d+%", r.stdout)  # the classifier reads the outputs
    r = run_cli("evaluate", *common, "-n", "2", "--no-cycle", "--json", str(tmp_path / "e.json"), cwd=tmp_path,
                env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["source"] == "fives-rgb" and report["target_accuracy"] is not None
    assert report["frechet_distance"] is not None and report["source_share"] is not None


@needs_mnist
def test_bench_quality_reads_the_rgb_pair_as_the_digits_it_learned(tmp_path):
    out = tmp_path / "out"
    args = ("bench", "quality", "--from", "fives-rgb", "--to", "sevens-rgb", "-n", "2", "--steps-list", "2",
            "--grids", "untuned", "--reference", "unipc:3", "--resamples", "10", "--data-dir", str(mnist_dir()),
            "--out-dir", str(out))  # fmt: skip
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    # Another thread count changes the real sevens' features in their last bits, not what the rows measured.
    again = run_cli(*args, env={"OMP_NUM_THREADS": "2"})
    assert again.returncode == 0, again.stderr
    assert "anew" not in again.stdout and again.stdout.count("read back") == 3, again.stdout
    with open(out / "quality-cpu.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # fives-rgb and sevens-rgb are models of the fives and the sevens: read, cycled and FD'd as such
        for figure in ("read_as_target", "cycle_read_as_source", "frechet_distance"):
            assert row[figure] != "", (row["label"], figure)
