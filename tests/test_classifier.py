"""The evaluation digit classifier: colour invariance, bundled accuracy, save/load, corrupt files."""

from __future__ import annotations

import json

import pytest
import torch

from ddib.color import colorize
from ddib.errors import DDIBError
from ddib.evaluation import classifier as clf

from .conftest import mnist_dir, needs_mnist


def _grey_digit_like(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, S, S) grey images in [0, 1]: smooth random strokes on black, like a digit."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    out = torch.zeros(n, size, size)
    for i in range(n):
        for _ in range(3):
            cy, cx = torch.rand(2, generator=g) * (size - 12) + 6
            r = torch.rand(1, generator=g) * 5 + 4
            ring = torch.exp(-((((ys - cy) ** 2 + (xs - cx) ** 2).sqrt() - r) ** 2) / 2.0)
            out[i] = torch.maximum(out[i], ring)
    return out.clamp(0, 1)


def _small_model(seed: int = 0) -> clf.DigitClassifier:
    torch.manual_seed(seed)
    model = clf.DigitClassifier(clf.ClassifierConfig(width=8, feature_dim=16))
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their initial values
        for _ in range(3):
            model(torch.rand(8, 3, 32, 32) * 2 - 1)
    return model.eval()


def test_value_channel_is_max_of_rgb_and_passes_grey_through():
    rgb = torch.tensor([0.2, -0.5, 0.9]).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    assert torch.equal(clf.value_channel(rgb), torch.full((2, 1, 2, 2), 0.9))
    grey = torch.rand(2, 1, 4, 4)
    assert clf.value_channel(grey) is grey
    with pytest.raises(DDIBError):
        clf.value_channel(torch.zeros(2, 2, 4, 4))


@pytest.mark.parametrize("which", ["random", "bundled"])
def test_same_digit_in_different_hues_gives_identical_logits(which):
    model = _small_model() if which == "random" else clf.load_classifier()
    grey = _grey_digit_like()
    hues = [torch.full((len(grey),), h) for h in (0.0, 100.0, 215.0, 333.0)]
    images = [colorize(grey, h) * 2 - 1 for h in hues]  # (B, 3, S, S) in [-1, 1]
    assert not torch.equal(images[0], images[2])  # the colours really differ
    with torch.no_grad():
        logits = [model(x) for x in images]
        grey_logits = model(grey[:, None] * 2 - 1)
    for other in logits[1:]:
        assert torch.equal(logits[0], other)
    assert torch.equal(logits[0], grey_logits)
    # The logits depend on the digit itself: a different grey image changes them.
    with torch.no_grad():
        different = model(colorize(_grey_digit_like(seed=1), hues[0]) * 2 - 1)
    assert not torch.allclose(different, logits[0])


@needs_mnist
def test_bundled_classifier_reads_coloured_test_digits():
    from ddib.data.colored_mnist import color_digits, load_mnist, split_hues

    model = clf.load_classifier()
    assert not model.training
    images, labels = load_mnist(mnist_dir(), "test")
    hues = torch.from_numpy(split_hues("test", len(labels)))[:500]
    coloured = color_digits(images[:500], hues, 32)
    predicted, probs = clf.predict(model, coloured.float() / 127.5 - 1, batch_size=128)
    assert probs.shape == (500, 10)
    assert torch.allclose(probs.sum(1), torch.ones(500), atol=1e-5)
    accuracy = (predicted == labels[:500]).float().mean().item()
    assert accuracy >= 0.98, accuracy
    assert model.metadata["test_accuracy"] >= 0.99
    features = clf.extract_features(model, coloured[:10])  # uint8 input is mapped to [-1, 1]
    assert features.shape == (10, 128)


def test_save_load_round_trip_is_bitwise(tmp_path):
    model = _small_model()
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    clf.save_classifier(model, tmp_path, {"test_accuracy": 0.5, "seed": 7})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = clf.load_classifier(tmp_path)
    assert loaded.config == model.config
    assert loaded.metadata["seed"] == 7 and loaded.metadata["torch"] == torch.__version__
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert torch.equal(loaded.features(x), model.features(x))
    labels, probs = clf.predict(loaded, x, batch_size=5)
    ref_labels, ref_probs = clf.predict(model, x, batch_size=16)
    assert torch.equal(labels, ref_labels) and torch.allclose(probs, ref_probs, atol=1e-6)
    assert torch.allclose(clf.extract_features(loaded, x, batch_size=3), model.features(x), atol=1e-6)


def test_truncated_weights_raise_ddib_error(tmp_path):
    clf.save_classifier(_small_model(), tmp_path, {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(DDIBError, match="corrupt or truncated"):
        clf.load_classifier(tmp_path)


def test_missing_or_bad_files_raise_ddib_error(tmp_path):
    with pytest.raises(DDIBError, match="no classifier config"):
        clf.load_classifier(tmp_path)
    clf.save_classifier(_small_model(), tmp_path, {})
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(DDIBError, match="no classifier weights"):
        clf.load_classifier(tmp_path)
    clf.save_classifier(_small_model(), tmp_path, {})
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["config"]["width"] = 16  # weights no longer fit the described network
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(DDIBError, match="does not match"):
        clf.load_classifier(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DDIBError, match="not valid JSON"):
        clf.load_classifier(tmp_path)
