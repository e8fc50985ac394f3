"""Models in the HSV cone: hue shifts are rotations there, and the denoiser commutes with every one of them."""

import math

import pytest
import torch

from ddib.bridge import ode
from ddib.color import chroma_angle, colorize, cone_to_rgb, digit_hue, hue_difference, rgb_to_cone, rotate_chroma
from ddib.errors import DDIBError
from ddib.likelihood.source_inference import score_images
from ddib.model import checkpoint as ckpt
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.nets import build_network, unet_config
from ddib.train.loop import TrainOptions, train

from .conftest import mnist_dir, needs_mnist, run_cli

GEN = torch.Generator().manual_seed(0)


def colored_digits(n=3, size=8, hue=None, seed=0):
    """(n, 3, size, size) one-hue digits in [-1, 1], float64; hues uniform unless given."""
    g = torch.Generator().manual_seed(seed)
    grey = torch.rand(n, size, size, generator=g, dtype=torch.float64) * (torch.rand(n, size, size, generator=g) > 0.5)
    hues = torch.rand(n, generator=g, dtype=torch.float64) * 360 if hue is None else torch.full((n,), float(hue))
    return colorize(grey, hues.double()) * 2 - 1


def random_cone_unet(symmetry="none", num_classes=0, seed=0) -> Diffusion:
    """A tiny cone-space UNet with every weight random (a zero head would make ε̂ = 0, trivially equivariant)."""
    g = torch.Generator().manual_seed(seed)
    cfg = unet_config("tiny", image_size=8)
    if num_classes:
        cfg = type(cfg)(**{**cfg.__dict__, "num_classes": num_classes})
    model = Diffusion(build_network(cfg), DiffusionConfig(color_space="cone", symmetry=symmetry))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3, generator=g)
    return model.double().eval()


def turn(x, degrees):
    return rotate_chroma(x, torch.full((x.shape[0],), math.radians(degrees), dtype=x.dtype))


def test_cone_coordinates_invert_rgb_and_turn_hue_shifts_into_rotations():
    rgb = torch.rand(4, 3, 8, 8, generator=GEN, dtype=torch.float64) * 2 - 1
    assert torch.allclose(cone_to_rgb(rgb_to_cone(rgb)), rgb, atol=1e-12)
    digits = colored_digits(4)
    cone = rgb_to_cone(digits)
    hue, _ = digit_hue(digits, threshold=0.0)
    assert hue_difference(torch.rad2deg(chroma_angle(cone)).float(), hue).max() < 1e-3  # one-hue digits: their hue
    grey = ((digits + 1) / 2).max(1).values
    for shift in (37.0, 120.0, 251.5):
        shifted = colorize(grey, hue.double() + shift) * 2 - 1  # the same digit, another hue
        assert torch.allclose(rgb_to_cone(shifted), turn(cone, shift), atol=1e-6)
    # In RGB a hue shift of 37° is no channel rotation: the cone is where it becomes linear.
    assert not torch.allclose(colorize(grey, hue.double() + 37) * 2 - 1, digits, atol=0.1)


def test_cone_coordinates_are_a_bijection_beyond_the_cube():
    """Nothing is clipped: an unclipped decode outside the RGB cube goes back to the same latent (the cycle)."""
    wild = torch.randn(5, 3, 8, 8, generator=GEN, dtype=torch.float64) * 3
    assert torch.allclose(rgb_to_cone(cone_to_rgb(wild)), wild, atol=1e-9)
    assert torch.allclose(cone_to_rgb(rgb_to_cone(wild)), wild, atol=1e-9)
    assert cone_to_rgb(wild).abs().max() > 1  # outside the cube, kept


@pytest.mark.parametrize("num_classes", [0, 3])
def test_cone_denoiser_is_exactly_equivariant_to_every_hue_rotation(num_classes):
    model = random_cone_unet(num_classes=num_classes)
    if num_classes:
        model = model.with_label(1)
    x = rgb_to_cone(colored_digits(3)) + 0.3 * torch.randn(3, 3, 8, 8, generator=GEN, dtype=torch.float64)
    with torch.no_grad():
        eps = model.eps(x, 0.4)
        for shift in (37.0, 200.0):
            assert torch.allclose(model.eps(turn(x, shift), 0.4), turn(eps, shift), atol=1e-9)
        # The same network without the canonical frame is not: the frame is what makes it so.
        plain = Diffusion(model.net, DiffusionConfig(), model.label)
        assert not torch.allclose(plain.eps(turn(x, 37.0), 0.4), turn(plain.eps(x, 0.4), 37.0), atol=1e-3)


def test_chroma_flip_average_makes_it_reflection_equivariant():
    flip = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64).view(3, 1, 1)  # h → −h
    x = torch.randn(3, 3, 8, 8, generator=GEN, dtype=torch.float64)
    with torch.no_grad():
        averaged = random_cone_unet("chroma-flip")
        assert torch.allclose(averaged.eps(x * flip, 0.4), averaged.eps(x, 0.4) * flip, atol=1e-9)
        raw = averaged.use_symmetry("none")
        assert not torch.allclose(raw.eps(x * flip, 0.4), raw.eps(x, 0.4) * flip, atol=1e-3)


def test_bridge_of_cone_models_commutes_with_hue_shifts_and_pins_the_hue_with_the_flip():
    src, tgt = random_cone_unet("chroma-flip", seed=1), random_cone_unet("chroma-flip", seed=2)
    opts = ode.ODEOptions(solver="unipc", steps=6)
    x = colored_digits(3)
    y = ode.translate(src, tgt, x, opts)
    grey = ((x + 1) / 2).max(1).values
    hue, _ = digit_hue(x, threshold=0.0)
    for shift in (37.0, 251.5):
        shifted = ode.translate(src, tgt, colorize(grey, hue.double() + shift) * 2 - 1, opts)
        assert torch.allclose(rgb_to_cone(shifted), turn(rgb_to_cone(y), shift), atol=1e-6)
    # A red digit (h = 0) is fixed by the reflection, so its translation is too: every pixel red or cyan.
    red = colored_digits(3, hue=0.0)
    assert rgb_to_cone(ode.translate(src, tgt, red, opts))[:, 2].abs().max() < 1e-6
    unflipped = ode.translate(src.use_symmetry("none"), tgt.use_symmetry("none"), red, opts)
    assert rgb_to_cone(unflipped)[:, 2].abs().max() > 1e-2


def test_colour_spaces_do_not_mix():
    cone, rgb = random_cone_unet(), Diffusion(build_network(unet_config("tiny", image_size=8)), DiffusionConfig())
    with pytest.raises(DDIBError, match="different colour spaces"):
        ode.translate(cone, rgb, colored_digits(1))
    with pytest.raises(DDIBError, match="different colour spaces"):
        score_images({"a": cone, "b": rgb}, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), method="band")
    with pytest.raises(DDIBError, match="acts on rgb images, but the model works in cone"):
        cone.use_symmetry("rgb-cyclic")
    with pytest.raises(DDIBError, match="acts on cone images"):
        rgb.use_symmetry("chroma-flip")
    with pytest.raises(DDIBError, match="unknown colour space"):
        DiffusionConfig(color_space="lab")
    assert DiffusionConfig().color_space == "rgb"  # config.json without the key: an RGB model


def _cfg(color_space):
    return ckpt.RunConfig(
        model=unet_config("tiny", image_size=16),
        diffusion=DiffusionConfig(color_space=color_space, symmetry="chroma-flip" if color_space == "cone" else "none"),
        train=ckpt.TrainConfig(batch_size=8, lr=2e-3, warmup_steps=5, augment="hue"),
        domain={"name": "blobs", "kind": "mnist", "digit": 5, "path": None},
    )


def test_cone_training_resumes_bit_identically_and_keeps_its_colour_space(tmp_path):
    data = (colored_digits(32, size=16) * 127.5 + 127.5).round().to(torch.uint8)
    train(tmp_path / "once", _cfg("cone"), data, TrainOptions(steps=6, save_every=100))
    train(tmp_path / "twice", _cfg("cone"), data, TrainOptions(steps=3, save_every=100))
    train(tmp_path / "twice", _cfg("cone"), data, TrainOptions(steps=6, save_every=100))
    train(tmp_path / "rgb", _cfg("rgb"), data, TrainOptions(steps=6, save_every=100))
    a, b, c = (ckpt.load_train_state(tmp_path / d)["net"] for d in ("once", "twice", "rgb"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    model = ckpt.load_model(tmp_path / "once")[0]
    assert model.config.color_space == "cone" and model.config.symmetry == "chroma-flip"
    with pytest.raises(DDIBError, match="color_space: cone \\(saved\\) vs rgb"):
        train(tmp_path / "once", _cfg("rgb"), data, TrainOptions(steps=8, save_every=100))


@needs_mnist
def test_cli_trains_a_cone_model_and_refuses_domains_without_hue_symmetry(tmp_path):
    args = ["train", "--domain", "fives", "--data-dir", mnist_dir(), "--models-dir", str(tmp_path / "m"),
            "--model-size", "tiny", "--batch-size", "8", "--sample-every", "0"]  # fmt: skip
    r = run_cli(*args, "--steps", "2", "--color-space", "cone")
    assert r.returncode == 0 and "HSV cone, hue-equivariant" in r.stdout, r.stderr
    r = run_cli(*args, "--steps", "3")
    assert r.returncode == 0 and "resuming at step 2/3" in r.stdout, r.stderr
    diffusion = ckpt.read_config(tmp_path / "m" / "fives")[0].diffusion
    assert diffusion.color_space == "cone" and diffusion.symmetry == "chroma-flip"
    listed = run_cli("models", "--models-dir", str(tmp_path / "m"))
    assert listed.returncode == 0 and "cone colour space" in listed.stdout
    r = run_cli("train", "--domain", "cats", "--data", str(tmp_path), "--color-space", "cone", "--models-dir",
                str(tmp_path / "m"))  # fmt: skip
    assert r.returncode != 0 and "--color-space cone needs a colored-MNIST digit domain" in r.stderr
    assert "Traceback" not in r.stderr
