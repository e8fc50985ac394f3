"""Score-SDE VE models (diffusers' ScoreSdeVeScheduler + a Fourier-embedded UNet2DModel, as google/ncsnpp-*):
checked against diffusers' own network and scheduler, and against a VE model whose score is known exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ddib.bridge import ode
from ddib.errors import DDIBError
from ddib.likelihood.ode_likelihood import log_likelihood
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.external import ExternalConfig, ScoreNet, load_external

from .conftest import run_cli
from .external_models import (
    SIZE,
    assert_round_trip_converges,
    save_pipeline,
    save_score_sde,
    tiny_score_unet,
    tiny_unet,
)

pytest.importorskip("diffusers")


def _images(n=2, seed=0):
    return torch.rand((n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_eps_is_minus_sigma_times_the_unets_score_on_the_schedulers_sigmas(tmp_path):
    from diffusers import ScoreSdeVeScheduler

    unet = tiny_score_unet(skip=True)
    model = load_external(save_score_sde(tmp_path / "m", unet), "diffusers")
    assert model.config.schedule == "ve" and not model.config.centered
    scheduler = ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=348.0)
    scheduler.set_timesteps(7)
    scheduler.set_sigmas(7)
    sigmas = scheduler.sigmas.double()  # σ(t) = σ_min·(σ_max/σ_min)^t at the sampler's continuous times t
    torch.testing.assert_close(model.schedule.sigma_bar(scheduler.timesteps.double()), sigmas, rtol=1e-6, atol=0)
    assert (model.schedule.sigma_min, model.schedule.sigma_max) == (0.01, 348.0)
    x_bar = torch.rand((2, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(1))
    for sigma in sigmas[::2].float():
        with torch.no_grad():  # the network's input is x̄ itself (VE coordinates) and σ; it returns the score
            score = unet(x_bar, sigma.expand(2)).sample
        got = model.eps_bar(x_bar, sigma)
        torch.testing.assert_close(got, -sigma * score, rtol=1e-4, atol=1e-4 * float(sigma))


class _GaussianScore(torch.nn.Module):
    """The exact score of x̄ = x₀ + σε with x₀ ~ N(μ, s²) per pixel, as a diffusers network returns it."""

    def __init__(self, mu: float, s: float):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x_bar, sigma, class_labels=None):
        sigma = sigma.view(-1, *[1] * (x_bar.ndim - 1))
        return type("Out", (), {"sample": -(x_bar - self.mu) / (self.s**2 + sigma**2)})()


def _gaussian_ve(mu: float, s: float, shape=(1, 2, 2)) -> Diffusion:
    net = ScoreNet(_GaussianScore(mu, s), ExternalConfig("diffusers", shape[-1], shape[0]))
    cfg = DiffusionConfig(schedule="ve", sigma_min=0.01, sigma_max=348.0, noise_input="timestep", centered=False)
    return Diffusion(net, cfg).eval()


def test_a_gaussian_ve_model_encodes_decodes_and_scores_images_exactly():
    mu, s, smin, smax = 0.3, 0.1, 0.01, 348.0
    model = _gaussian_ve(mu, s)
    g = torch.Generator().manual_seed(0)
    x0 = (mu + s * torch.randn((3, 1, 2, 2), generator=g, dtype=torch.float64)).float()
    images = 2 * x0 - 1  # the model's data lie in [0, 1]
    opts = ode.ODEOptions(solver="dopri5", rtol=1e-8, atol=1e-8)
    z = ode.encode(model, images, opts)
    # x̄(σ) − μ grows as √(s² + σ²); the latent is x̄(σ_max)·α(σ_max)
    alpha = lambda sigma: (1 + sigma**2) ** -0.5  # noqa: E731
    x_bar_0 = x0 / alpha(smin)
    exact = (mu + (x_bar_0 - mu) * math.sqrt(s**2 + smax**2) / math.sqrt(s**2 + smin**2)) * alpha(smax)
    torch.testing.assert_close(z, exact, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(ode.decode(model, z, opts), images, rtol=0, atol=1e-4)
    # log p of the image y = 2x − 1: the Gaussian density of x̄₀ at σ_min, times dx/dy = 1/2 per dimension
    res = log_likelihood(model, images.double().float(), exact=True, rtol=1e-7, atol=1e-7)
    var = s**2 + smin**2
    log_p_x = (-0.5 * (x_bar_0 - mu) ** 2 / var - 0.5 * math.log(2 * math.pi * var)).sum((1, 2, 3)) - 4 * math.log(
        alpha(smin)
    )
    torch.testing.assert_close(res.log_p, log_p_x + 4 * math.log(0.5), rtol=0, atol=2e-3)


def test_clipping_a_ve_decode_clips_to_its_data_range():
    model = _gaussian_ve(-0.5, 0.1)  # data below [0, 1] (yet inside [-1, 1]): a clipped decode holds it at 0
    z = torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    free = ode.decode(model, z, ode.ODEOptions(solver="ddim", steps=50))
    clipped = ode.decode(model, z, ode.ODEOptions(solver="ddim", steps=50, clip=True))
    assert (free + 2).abs().max() < 0.5  # x ≈ −0.5, the image 2x − 1 ≈ −2
    assert (clipped + 1).abs().max() < 0.1  # x̂₀ held at 0, the bottom of [0, 1]: the image's −1 (up to σ_min·ε)


def test_round_trip_converges_and_a_bridge_to_a_ddpm_model_meets_where_both_reach(tmp_path):
    # A random score network is no score (its x̂₀ is unbounded), so the solver is checked on an exact one.
    ve = _gaussian_ve(0.4, 0.2, shape=(3, SIZE, SIZE))
    x = _images(2, seed=2)
    assert_round_trip_converges(ve, x, (10, 40))
    ddpm = load_external(save_pipeline(tmp_path / "ddpm", prediction="v_prediction"), "diffusers")
    src, tgt = ode.bridge_ends(ve, ddpm)
    assert src.schedule.sigma_max == tgt.schedule.sigma_max == ddpm.schedule.sigma_max < ve.schedule.sigma_max
    opts = ode.ODEOptions(steps=12)
    y = ode.translate(ve, ddpm, x, opts)
    torch.testing.assert_close(y, ode.decode(ddpm, ode.encode(src, x, opts), opts))
    back = ode.translate(ddpm, ve, y, opts)
    assert torch.isfinite(back).all() and back.shape == x.shape


def test_a_score_sde_folder_through_the_cli(tmp_path):
    folder = save_score_sde(tmp_path / "ncsnpp", tiny_score_unet(skip=False))
    models = ["--models-dir", str(tmp_path / "models")]
    r = run_cli("models", "add", "faces", str(folder), *models)
    assert r.returncode == 0, r.stderr
    r = run_cli("models", *models)
    assert r.returncode == 0 and "VE σ 0.01–348" in r.stdout and "[0, 1]" in r.stdout, r.stdout
    ddpm = save_pipeline(tmp_path / "ddpm", tiny_unet(seed=1), prediction="v_prediction")
    out = tmp_path / "out"
    r = run_cli("translate", "--from", "faces", "--to", str(ddpm), "-n", "2", "--steps", "4", "--out-dir", str(out),
                *models)  # fmt: skip
    assert r.returncode == 0 and len(list(out.glob("*.png"))) == 2, r.stderr


def test_a_time_embedding_that_does_not_go_with_its_scheduler_is_one_error_line(tmp_path):
    fourier_ddpm = save_pipeline(tmp_path / "a", tiny_score_unet(skip=False))
    with pytest.raises(DDIBError, match="fourier time embedding does not go with its scheduler"):
        load_external(fourier_ddpm, "diffusers")
    positional_ve = save_score_sde(tmp_path / "b", tiny_unet())
    with pytest.raises(DDIBError, match="positional time embedding does not go with its scheduler"):
        load_external(positional_ve, "diffusers")
    bad = save_score_sde(tmp_path / "c", tiny_score_unet(skip=False), sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(DDIBError, match="0 < sigma_min < sigma_max"):
        load_external(bad, "diffusers")
    cfg = json.loads((tmp_path / "c" / "scheduler" / "scheduler_config.json").read_text())
    assert cfg["_class_name"] == "ScoreSdeVeScheduler"
