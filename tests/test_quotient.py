"""Hue-quotient models: each models its domain's hue-0 slice, and the bridge carries every image's hue beside z."""

import math

import pytest
import torch

from ddib.bridge import ode
from ddib.bridge.latent import Latent
from ddib.color import colorize, digit_hue, hue_angle, hue_difference, rotate_hue
from ddib.errors import DDIBError
from ddib.likelihood.source_inference import score_images
from ddib.model import checkpoint as ckpt
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.nets import build_network, unet_config
from ddib.train.loop import TrainOptions, train

from .conftest import mnist_dir, needs_mnist, run_cli
from .problems import gaussian_model
from .test_cone import colored_digits

GEN = torch.Generator().manual_seed(0)
OPTS = ode.ODEOptions(steps=4)


def random_quotient_unet(seed=0, color_space="rgb") -> Diffusion:
    """A tiny hue-quotient UNet with every weight random: nothing learned about colour at all."""
    g = torch.Generator().manual_seed(seed)
    model = Diffusion(build_network(unet_config("tiny", image_size=8)),
                      DiffusionConfig(quotient="hue", color_space=color_space))  # fmt: skip
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3, generator=g)
    return model.double().eval()


def radians(degrees, n):
    return torch.full((n,), math.radians(degrees), dtype=torch.float64)


def test_hue_angle_reads_a_one_hue_digit_and_rotate_hue_shifts_it_invertibly():
    digits = colored_digits(5)
    hue, _ = digit_hue(digits, threshold=0.0)
    assert hue_difference(torch.rad2deg(hue_angle(digits)).float(), hue).max() < 1e-3
    turned = rotate_hue(digits, radians(100, 5))
    assert hue_difference(digit_hue(turned, threshold=0.0)[0], hue + 100).max() < 1e-3
    assert torch.allclose(turned.max(1).values, digits.max(1).values, atol=1e-9)  # value (the grey digit) kept
    wild = torch.rand(4, 3, 8, 8, generator=GEN, dtype=torch.float64) * 2 - 1  # any RGB image, many hues
    assert torch.allclose(rotate_hue(rotate_hue(wild, radians(73, 4)), radians(-73, 4)), wild, atol=1e-9)


@pytest.mark.parametrize("color_space", ["rgb", "cone"])
def test_every_hue_of_a_digit_enters_the_model_as_the_same_hue_0_image(color_space):
    model = random_quotient_unet(color_space=color_space)
    grey = (colored_digits(3) + 1).max(1).values / 2
    canon = [model.to_model_space(colorize(grey, torch.full((3,), h)) * 2 - 1) for h in (0.0, 95.0, 250.0)]
    assert all(torch.allclose(c, canon[0], atol=1e-6) for c in canon)
    red = colorize(grey, torch.zeros(3)) * 2 - 1
    assert torch.allclose(model.to_images(canon[0]), red, atol=1e-6)
    hue = radians(250, 3)
    assert torch.allclose(model.to_images(canon[0], hue), colorize(grey, torch.full((3,), 250.0)) * 2 - 1, atol=1e-6)


@pytest.mark.parametrize("color_space", ["rgb", "cone"])
def test_bridge_of_random_quotient_models_commutes_with_every_hue_shift(color_space):
    """translate(R·x) = R·translate(x) for any networks: the hue is carried, not learned."""
    src, tgt = random_quotient_unet(0, color_space), random_quotient_unet(1, color_space)
    x = colored_digits(4)
    y = ode.translate(src, tgt, x, OPTS)
    for shift in (40.0, 181.0):
        shifted = ode.translate(src, tgt, rotate_hue(x, radians(shift, 4)), OPTS)
        assert torch.allclose(shifted, rotate_hue(y, radians(shift, 4)), atol=1e-6)
    # The output's hue is the input's plus what the target's hue-0 decode has: nothing depends on the input hue.
    offset = hue_angle(y) - hue_angle(x)
    canon = ode.decode(tgt, ode.encode(src, x, OPTS), OPTS)
    assert torch.allclose(torch.remainder(offset - hue_angle(canon) + math.pi, 2 * math.pi) - math.pi,
                          torch.zeros(4, dtype=torch.float64), atol=1e-6)  # fmt: skip


def test_a_target_of_one_red_digit_returns_it_at_every_input_hue():
    """Known answer: the exact ε̂ of N(red digit, 10⁻⁴ I) decodes every latent to that digit, at hue 0; the bridge
    turns it to the input's hue."""
    red = colored_digits(1, hue=0)[0]
    tgt = gaussian_model(red, 1e-4, DiffusionConfig(quotient="hue"))
    x = colored_digits(6, seed=1)
    y = ode.translate(random_quotient_unet(0), tgt, x, ode.ODEOptions(steps=20))
    hue_in, _ = digit_hue(x)
    hue_out, share = digit_hue(y)
    assert torch.allclose(y.max(1).values, red.max(0).values.expand(6, -1, -1), atol=1e-2)  # the digit's value
    assert hue_difference(hue_out, hue_in).max() < 0.5


def test_quotient_and_full_models_do_not_mix_and_hues_are_not_averaged():
    with pytest.raises(DDIBError, match="--quotient"):
        ode.translate(random_quotient_unet(), Diffusion(build_network(unet_config("tiny", image_size=8))),
                      colored_digits(2).float(), OPTS)  # fmt: skip
    with pytest.raises(DDIBError, match="knows only hue 0"):
        DiffusionConfig(quotient="hue", symmetry="rgb-cyclic")
    DiffusionConfig(quotient="hue", color_space="cone", symmetry="chroma-flip")  # the reflections keep hue 0
    DiffusionConfig(quotient="hue", symmetry="rgb-flip")
    with pytest.raises(DDIBError, match="unknown quotient"):
        DiffusionConfig(quotient="shape")
    with pytest.raises(DDIBError, match="only a hue-quotient model"):
        Diffusion(build_network(unet_config("tiny", image_size=8))).to_images(torch.zeros(1, 3, 8, 8), torch.zeros(1))


def test_likelihood_of_a_quotient_model_ignores_the_hue_and_does_not_mix_with_full_models():
    model = random_quotient_unet().float()
    x = colored_digits(2, seed=2).float()
    u8 = torch.cat([x, rotate_hue(x.double(), radians(140, 2)).float()])
    u8 = ((u8 + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    # The same draws (seeded) for the digits and their turned copies: equal up to the 8-bit rounding of the turn.
    (a,), (b,) = (score_images({"fives": model}, half, method="elbo", levels=4) for half in (u8[:2], u8[2:]))
    assert torch.allclose(a.draws, b.draws, rtol=0.02)
    full = random_quotient_unet().float()
    full.config = DiffusionConfig()  # the same network as a model of the full domain: the hue counts
    (c,), (d,) = (score_images({"fives": full}, half, method="elbo", levels=4) for half in (u8[:2], u8[2:]))
    assert not torch.allclose(c.draws, d.draws, rtol=0.02)
    with pytest.raises(DDIBError, match="different --quotient"):
        score_images({"a": model, "b": full}, u8, method="elbo", levels=4)


def test_sampling_draws_the_hue_uniformly_and_deterministically():
    model = random_quotient_unet().float()
    a = ode.sample(model, 6, torch.Generator().manual_seed(3), OPTS)
    b = ode.sample(model, 6, torch.Generator().manual_seed(3), OPTS)
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(3)
    z = torch.randn((6, *model.data_shape), generator=g)
    hue = ode.sample_hue(model, 6, g)
    assert torch.equal(a, ode.decode(model, ode.Latent(z, hue), OPTS))
    many = ode.sample_hue(model, 20000, torch.Generator().manual_seed(0))
    assert 0 <= many.min() and many.max() < 2 * math.pi
    assert torch.histc(many, bins=8, min=0, max=2 * math.pi).div(20000).sub(1 / 8).abs().max() < 0.01
    assert ode.sample_hue(Diffusion(build_network(unet_config("tiny", image_size=8))), 3) is None


def test_latent_files_carry_the_hue_and_label_and_batches_keep_them_aligned(tmp_path):
    z, hue, label = torch.randn(5, 3, 4, 4), torch.rand(5), torch.arange(5)
    Latent(z, hue, label, {"source": "fives"}).save(tmp_path / "z.safetensors")
    back = Latent.load(tmp_path / "z.safetensors")
    assert torch.equal(back.z, z) and torch.equal(back.hue, hue) and torch.equal(back.label, label)
    assert back.meta["source"] == "fives"
    Latent(z).save(tmp_path / "plain.safetensors")
    plain = Latent.load(tmp_path / "plain.safetensors")
    assert plain.hue is None and plain.label is None
    joined = Latent.cat([back[3:], back[:3]])
    assert torch.equal(joined.hue, hue[[3, 4, 0, 1, 2]]) and torch.equal(joined.label, label[[3, 4, 0, 1, 2]])
    with pytest.raises(DDIBError, match="with and without hues"):
        Latent.cat([back, plain])
    with pytest.raises(DDIBError, match="hues of shape"):
        Latent(z, hue[:3])


def _cfg(quotient):
    return ckpt.RunConfig(
        model=unet_config("tiny", image_size=16),
        diffusion=DiffusionConfig(quotient=quotient),
        train=ckpt.TrainConfig(batch_size=8, lr=2e-3, warmup_steps=5),
        domain={"name": "blobs", "kind": "mnist", "digit": 5, "path": None},
    )


def test_quotient_training_sees_only_hue_0_resumes_bit_identically_and_keeps_its_quotient(tmp_path):
    data = (colored_digits(32, size=16) * 127.5 + 127.5).round().to(torch.uint8)
    train(tmp_path / "once", _cfg("hue"), data, TrainOptions(steps=6, save_every=100))
    train(tmp_path / "twice", _cfg("hue"), data, TrainOptions(steps=3, save_every=100))
    train(tmp_path / "twice", _cfg("hue"), data, TrainOptions(steps=6, save_every=100))
    # The same digits at other hues are the same training data for a hue-quotient model.
    grey = (data.float() / 255).max(1).values
    recoloured = (colorize(grey, torch.rand(32, generator=GEN) * 360) * 255).round().to(torch.uint8)
    train(tmp_path / "recoloured", _cfg("hue"), recoloured, TrainOptions(steps=6, save_every=100))
    train(tmp_path / "full", _cfg("none"), data, TrainOptions(steps=6, save_every=100))
    a, b, r, f = (ckpt.load_train_state(tmp_path / d)["net"] for d in ("once", "twice", "recoloured", "full"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], r[k], atol=2e-3) for k in a)  # up to the 8-bit rounding of the recolouring
    assert not all(torch.allclose(a[k], f[k], atol=2e-3) for k in a)
    assert ckpt.load_model(tmp_path / "once")[0].config.quotient == "hue"
    with pytest.raises(DDIBError, match="quotient: hue \\(saved\\) vs none"):
        train(tmp_path / "once", _cfg("none"), data, TrainOptions(steps=8, save_every=100))


def test_coloured_digits_leave_the_hue_out_by_default_unless_a_run_asks_for_full_colour():
    from ddib.data.domains import domain_source
    from ddib.train.recipe import default_quotient

    fives, folder = domain_source("fives"), domain_source("cats", "some/folder")
    assert default_quotient(fives, 3, "rgb", "none", None) == "hue"
    assert default_quotient(fives, 3, "rgb", "none", "rgb-flip") == "hue"  # keeps hue 0 in place
    assert default_quotient(fives, 3, "rgb", "hue", None) == "none"  # hue resampling trains every hue
    assert default_quotient(fives, 3, "cone", "none", None) == "none"
    assert default_quotient(fives, 3, "rgb", "none", "rgb-cyclic") == "none"
    assert default_quotient(fives, 1, "rgb", "none", None) == "none"  # grey digits have no hue
    assert default_quotient(folder, 3, "rgb", "none", None) == "none"
    assert default_quotient(domain_source("digits"), 3, "rgb", "none", None) == "none"


@needs_mnist
def test_cli_trains_translates_and_decodes_with_the_hue_carried(tmp_path):
    m = str(tmp_path / "m")
    for domain in ("fives", "sevens"):
        args = ["train", "--domain", domain, "--data-dir", mnist_dir(), "--models-dir", m, "--model-size", "tiny",
                "--batch-size", "8", "--sample-every", "0", "--steps", "2"]  # fmt: skip
        r = run_cli(*args, *(["--quotient", "hue"] if domain == "sevens" else []))  # fives: by default
        assert r.returncode == 0 and "hue left out" in r.stdout, r.stderr
    assert ckpt.read_config(tmp_path / "m" / "fives")[0].diffusion.symmetry == "none"
    listed = run_cli("models", "--models-dir", m)
    assert listed.returncode == 0 and "hue left out" in listed.stdout
    src = tmp_path / "src.png"
    from ddib.io.images import save_png, to_pil

    save_png(to_pil(colored_digits(1, size=32, hue=130).float()[0]), src)
    r = run_cli("translate", str(src), "--to", "sevens", "--from", "fives", "--models-dir", m, "--steps", "3",
                "--out", str(tmp_path / "out.png"), "--save-latent", str(tmp_path / "z.safetensors"))  # fmt: skip
    assert r.returncode == 0 and "with each image's hue" in r.stdout and "each hue carried" in r.stdout, r.stderr
    hue = Latent.load(tmp_path / "z.safetensors").hue
    assert abs(math.degrees(hue.item()) - 130) < 0.5
    r = run_cli("decode", str(tmp_path / "z.safetensors"), "--to", "sevens", "--models-dir", m, "--steps", "3",
                "--out", str(tmp_path / "back.png"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    export = ["export", "--domain", "sevens", "--models-dir", m, "--out", str(tmp_path / "x"), "--symmetry"]
    r = run_cli(*export, "rgb-cyclic")
    assert r.returncode != 0 and "hue-quotient model knows only hue 0" in r.stderr and not (tmp_path / "x").exists()
    r = run_cli(*export, "rgb-flip")
    assert r.returncode == 0 and "(local, step 2, symmetry rgb-flip)" in r.stdout, r.stderr
    r = run_cli("train", "--domain", "moons", "--quotient", "hue", "--models-dir", m, "--steps", "1")
    assert r.returncode != 0 and "--quotient hue needs a colored-MNIST digit domain" in r.stderr
    assert "Traceback" not in r.stderr
