"""Channel-permutation group averaging: exact equivariance, known answers, never a worse loss, config handling."""

import itertools

import pytest
import torch

from ddib.bridge import ode
from ddib.errors import DDIBError
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.nets import MLPConfig, build_network, unet_config
from ddib.model.symmetry import SYMMETRIES, group_average
from tests.problems import gaussian_model

GEN = torch.Generator().manual_seed(0)


def random_unet(symmetry: str = "none") -> Diffusion:
    """A tiny UNet with every weight random (the zero-initialised head would make ε̂ = 0, trivially equivariant)."""
    torch.manual_seed(0)
    model = Diffusion(build_network(unet_config("tiny", image_size=8)), DiffusionConfig(symmetry=symmetry))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3, generator=GEN)
    return model.double().eval()


def permute(x: torch.Tensor, p) -> torch.Tensor:
    return x[:, list(p)]


@pytest.mark.parametrize("name", ["rgb-cyclic", "rgb-all", "rgb-flip"])
def test_group_average_is_exactly_equivariant(name):
    model = random_unet(name)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=GEN)
    with torch.no_grad():
        eps = model.eps(x, 0.4)
        for p in SYMMETRIES[name]:
            assert torch.allclose(model.eps(permute(x, p), 0.4), permute(eps, p), atol=1e-12)
        raw = model.use_symmetry("none").eps(x, 0.4)
        # The raw network is not equivariant, so the average really changed something.
        q = SYMMETRIES[name][-1]
        assert not torch.allclose(model.use_symmetry("none").eps(permute(x, q), 0.4), permute(raw, q), atol=1e-3)


def test_cyclic_average_is_not_reflection_equivariant():
    model = random_unet("rgb-cyclic")
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=GEN)
    swap = (0, 2, 1)  # h → −h
    with torch.no_grad():
        assert not torch.allclose(model.eps(permute(x, swap), 0.4), permute(model.eps(x, 0.4), swap), atol=1e-3)


def test_gaussian_known_answer():
    """The exact ε of N(μ, s²I) is affine in μ, so its group average is the exact ε of N(mean of μ's orbit, s²I)."""
    mean = torch.zeros(3, 4, 4, dtype=torch.float64)
    mean[0] = 0.6  # a red blob: not invariant
    mean[1, :2] = -0.3
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, generator=GEN)
    for name in ("rgb-cyclic", "rgb-all"):
        orbit_mean = torch.stack([mean[list(p)] for p in SYMMETRIES[name]]).mean(0)
        for t in (0.05, 0.5, 0.95):
            got = gaussian_model(mean, 0.5).use_symmetry(name).eps(x, t)
            assert torch.allclose(got, gaussian_model(orbit_mean, 0.5).eps(x, t), atol=1e-12)
    # An invariant Gaussian (same mean in every channel) is left exactly as it is.
    grey = mean.mean(0, keepdim=True).expand(3, 4, 4).clone()
    assert torch.allclose(gaussian_model(grey, 0.5).use_symmetry("rgb-all").eps(x, 0.3),
                          gaussian_model(grey, 0.5).eps(x, 0.3), atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("name", ["rgb-cyclic", "rgb-all"])
def test_averaging_never_raises_the_denoising_loss_on_invariant_data(name):
    """Jensen: on a set closed under the group, ‖ε − ε̂_G‖² ≤ ‖ε − ε̂‖² on average (the reason to average)."""
    model = random_unet()
    x0 = torch.rand(4, 3, 8, 8, dtype=torch.float64, generator=GEN) * 2 - 1
    noise = torch.randn(x0.shape, dtype=torch.float64, generator=GEN)
    perms = list(itertools.permutations(range(3)))  # closed under every subgroup
    x0, noise = torch.cat([permute(x0, p) for p in perms]), torch.cat([permute(noise, p) for p in perms])
    t = torch.full((len(x0),), 0.3, dtype=torch.float64)
    alpha, sigma = model.schedule.alpha_sigma(t[0])
    x_t = alpha * x0 + sigma * noise
    with torch.no_grad():
        raw = (model.eps(x_t, t) - noise).pow(2).mean()
        averaged = (model.use_symmetry(name).eps(x_t, t) - noise).pow(2).mean()
    assert averaged < raw


def test_translation_commutes_with_the_group():
    src, tgt = random_unet("rgb-cyclic"), random_unet("rgb-cyclic")
    with torch.no_grad():
        for p in tgt.parameters():
            p.mul_(0.9)  # another model
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=GEN) * 2 - 1
    opts = ode.ODEOptions(solver="midpoint", steps=4)
    y = ode.translate(src, tgt, x, opts)
    for p in SYMMETRIES["rgb-cyclic"]:
        assert torch.allclose(ode.translate(src, tgt, permute(x, p), opts), permute(y, p), atol=1e-9)


def test_one_network_call_per_evaluation_and_determinism():
    calls = []

    def fn(x, t):
        calls.append(x.shape[0])
        return x * t.reshape(-1, 1, 1, 1)

    x = torch.randn(2, 3, 4, 4, generator=GEN)
    t = torch.full((2,), 0.5)
    out = group_average(fn, x, t, "rgb-all")
    assert calls == [12]  # six copies of the batch of two, in one call
    assert torch.allclose(out, x * 0.5)  # equivariant fn: averaging changes nothing
    assert torch.equal(out, group_average(fn, x, t, "rgb-all"))


def test_config_errors_and_old_configs():
    assert DiffusionConfig().symmetry == "none"  # config.json without the key: no averaging
    with pytest.raises(DDIBError, match="unknown symmetry"):
        DiffusionConfig(symmetry="hue")
    with pytest.raises(DDIBError, match="acts on three colour channels"):
        Diffusion(build_network(unet_config("tiny", image_size=8, channels=1)), DiffusionConfig(symmetry="rgb-all"))
    with pytest.raises(DDIBError, match="acts on three colour channels"):
        Diffusion(build_network(MLPConfig()), DiffusionConfig()).use_symmetry("rgb-cyclic")
    with pytest.raises(DDIBError, match="unknown symmetry"):
        random_unet().use_symmetry("auto")


def test_default_symmetry_follows_the_domain():
    from ddib.data import domain_source
    from ddib.train.recipe import default_symmetry

    assert default_symmetry(domain_source("fives", None), 3) == "rgb-cyclic"  # uniform hues, full saturation
    assert default_symmetry(domain_source("fives", None), 1) == "none"
    assert default_symmetry(domain_source("moons", None), 3) == "none"
