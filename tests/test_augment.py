"""Hue resampling: an exact symmetry of the colored-MNIST domains, applied to every training draw."""

import pytest
import torch

from ddib.color import colorize, rgb_to_hue_value
from ddib.data.augment import augment_batch, check_augment, resample_hue
from ddib.errors import DDIBError
from ddib.model import checkpoint as ckpt
from ddib.model.diffusion import DiffusionConfig
from ddib.model.nets import unet_config
from ddib.train.loop import TrainOptions, step_generator, train

from .conftest import mnist_dir, needs_mnist, run_cli


def _colored(n=64, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    grey = torch.rand(n, size, size, generator=g) * (torch.rand(n, size, size, generator=g) > 0.6)
    hues = torch.rand(n, generator=g) * 360
    return colorize(grey, hues).mul(255).round().clamp(0, 255).to(torch.uint8)


def test_resampling_keeps_the_grey_digit_exactly_and_changes_the_hue():
    x = _colored()
    y = resample_hue(x, torch.Generator().manual_seed(1))
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert torch.equal(y.max(dim=1).values, x.max(dim=1).values)  # V = max(R, G, B) is the grey digit
    hue_x, _ = rgb_to_hue_value(x.float() / 255)
    hue_y, _ = rgb_to_hue_value(y.float() / 255)
    ink = x.max(dim=1).values > 128
    assert (hue_x[ink] - hue_y[ink]).abs().mean() > 30  # the colour moved
    # still full saturation: min(R, G, B) = 0 wherever the hue sits on a hexcone edge's end, and never above V
    assert torch.all(y.min(dim=1).values <= y.max(dim=1).values)


def test_resampled_hues_are_uniform_and_deterministic_per_generator():
    grey = torch.full((4000, 1, 1), 1.0)
    x = colorize(grey, torch.zeros(4000)).mul(255).round().to(torch.uint8)
    y = resample_hue(x, torch.Generator().manual_seed(7))
    hue, _ = rgb_to_hue_value(y.float() / 255)
    counts = torch.histc(hue.flatten(), bins=12, min=0, max=360)
    expected = 4000 / 12
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 40  # 11 degrees of freedom: p ≈ 1e-5 at 40
    again = resample_hue(x, torch.Generator().manual_seed(7))
    assert torch.equal(y, again)
    assert not torch.equal(y, resample_hue(x, torch.Generator().manual_seed(8)))


def test_each_rank_and_step_draws_its_own_hues_and_none_leaves_the_batch_alone():
    x = _colored(8)
    cpu = torch.device("cpu")
    draws = [augment_batch(x, "hue", step_generator(0, rank, step, cpu, stream=1)) for rank, step in
             ((0, 5), (1, 5), (0, 6))]  # fmt: skip
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    assert torch.equal(draws[0], augment_batch(x, "hue", step_generator(0, 0, 5, cpu, stream=1)))
    assert augment_batch(x, "none", step_generator(0, 0, 5, cpu, stream=1)) is x
    # the augmentation's stream is not the loss's: --augment none trains exactly as before
    a, b = step_generator(0, 0, 5, cpu), step_generator(0, 0, 5, cpu, stream=1)
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_check_augment():
    check_augment("hue", hue_uniform=True)
    check_augment("none", hue_uniform=False)
    with pytest.raises(DDIBError, match="colored-MNIST"):
        check_augment("hue", hue_uniform=False)
    with pytest.raises(DDIBError, match="unknown augmentation"):
        check_augment("flip", hue_uniform=True)


def _cfg(augment):
    return ckpt.RunConfig(
        model=unet_config("tiny", image_size=16),
        diffusion=DiffusionConfig(),
        train=ckpt.TrainConfig(batch_size=8, lr=2e-3, warmup_steps=5, augment=augment),
        domain={"name": "blobs", "kind": "mnist", "digit": 5, "path": None},
    )


def test_hue_augmented_training_resumes_bit_identically_and_differs_from_none(tmp_path):
    data = _colored(32)
    train(tmp_path / "once", _cfg("hue"), data, TrainOptions(steps=6, save_every=100))
    train(tmp_path / "twice", _cfg("hue"), data, TrainOptions(steps=3, save_every=100))
    train(tmp_path / "twice", _cfg("hue"), data, TrainOptions(steps=6, save_every=100))
    train(tmp_path / "plain", _cfg("none"), data, TrainOptions(steps=6, save_every=100))
    a, b, c = (ckpt.load_train_state(tmp_path / d)["net"] for d in ("once", "twice", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert ckpt.read_config(tmp_path / "once")[0].train.augment == "hue"
    with pytest.raises(DDIBError, match="augment: hue \\(saved\\) vs none"):
        train(tmp_path / "once", _cfg("none"), data, TrainOptions(steps=8, save_every=100))


@needs_mnist
def test_cli_records_augment_and_ema_decay_and_keeps_them_on_resume(tmp_path):
    args = ["train", "--domain", "fives", "--data-dir", mnist_dir(), "--models-dir", str(tmp_path / "m"),
            "--model-size", "tiny", "--batch-size", "8", "--sample-every", "0"]  # fmt: skip
    r = run_cli(*args, "--steps", "2", "--augment", "hue", "--ema-decay", "0.9999")
    assert r.returncode == 0 and "hue augmentation" in r.stdout, r.stderr
    r = run_cli(*args, "--steps", "3")
    assert r.returncode == 0 and "resuming at step 2/3" in r.stdout, r.stderr
    train_cfg = ckpt.read_config(tmp_path / "m" / "fives")[0].train
    assert train_cfg.augment == "hue" and train_cfg.ema_decay == 0.9999
    r = run_cli(*args, "--steps", "4", "--augment", "none")
    assert r.returncode != 0 and "augment: hue (saved) vs none (asked)" in r.stderr
    r = run_cli("train", "--domain", "cats", "--data", str(tmp_path), "--augment", "hue", "--models-dir",
                str(tmp_path / "m"))  # fmt: skip
    assert r.returncode != 0 and "--augment hue needs a colored-MNIST digit domain" in r.stderr
