import math

import pytest
import torch

from ddib.model.diffusion import Diffusion, DiffusionConfig, make_schedule
from ddib.model.nets import build_network, unet_config


def test_schedule_endpoints_and_inverse():
    s = make_schedule(DiffusionConfig())
    assert math.isclose(s.sigma_bar(0.0), 0.002, rel_tol=1e-12)
    assert math.isclose(s.sigma_bar(1.0), 80.0, rel_tol=1e-12)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(s.t_of_sigma_bar(s.sigma_bar(t)), t, atol=1e-12)
    alpha, sigma = s.alpha_sigma(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t))
    assert torch.allclose(sigma / alpha, s.sigma_bar(t))
    assert torch.all(torch.diff(s.sigma_bar(t)) > 0)


def test_loss_is_finite_and_reproducible():
    model = Diffusion(build_network(unet_config("tiny", image_size=16)))
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    a = model.loss(x, torch.Generator().manual_seed(1))
    b = model.loss(x, torch.Generator().manual_seed(1))
    assert torch.isfinite(a) and a.item() == b.item()
    assert abs(a.item() - 1.0) < 0.1  # zero-initialised head: ε̂ = 0, so the loss is E[ε²] ≈ 1


def test_v_parameterisation_hands_out_the_exact_eps():
    from tests.problems import gaussian_model, gaussian_v_model

    mean, std = torch.full((3, 4, 4), 0.3, dtype=torch.float64), 0.5
    eps_model, v_model = gaussian_model(mean, std), gaussian_v_model(mean, std)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in (0.0, 0.3, 0.9, 1.0):  # up to σ̄ = 80, where v and ε differ most
        assert torch.allclose(v_model.eps(x, t), eps_model.eps(x, t), rtol=1e-9, atol=1e-9)


class _Recorder(torch.nn.Module):
    """Returns zeros and keeps its inputs, so the loss is the mean square of the target."""

    def forward(self, x, t):
        self.x_t, self.t = x.clone(), t.clone()
        return torch.zeros_like(x)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_target_is_eps_or_v(prediction):
    net = _Recorder()
    model = Diffusion(net, DiffusionConfig(prediction=prediction))
    x0 = torch.rand(6, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    loss = model.loss(x0, torch.Generator().manual_seed(3))
    alpha, sigma = (a.reshape(-1, 1, 1, 1) for a in model.schedule.alpha_sigma(net.t))
    eps = (net.x_t - alpha * x0) / sigma
    target = eps if prediction == "eps" else alpha * eps - sigma * x0
    assert loss.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-6)


def test_configs_without_prediction_are_eps_models_and_unknown_ones_are_refused():
    from ddib.errors import DDIBError
    from ddib.model.checkpoint import RunConfig, TrainConfig

    cfg = RunConfig(unet_config("tiny", 16), DiffusionConfig(), TrainConfig(), {"name": "x"}).to_dict()
    del cfg["diffusion"]["prediction"]  # as written before v existed
    assert RunConfig.from_dict(cfg).diffusion.prediction == "eps"
    with pytest.raises(DDIBError, match="unknown prediction"):
        DiffusionConfig(prediction="x0")


def test_log_snr_noise_input_spans_the_unit_interval_and_old_configs_see_t():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, t):
            seen.append(t.clone())
            return torch.zeros_like(x)

    model = Diffusion(Recorder(), DiffusionConfig(noise_input="log-snr"))
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    model.eps(torch.zeros(4, 2, dtype=torch.float64), t)
    u = seen[-1]
    assert torch.allclose(u[[0, -1]], torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-12)
    sigma_bar = model.schedule.sigma_bar(t)
    expected = torch.log(sigma_bar / 0.002) / math.log(80 / 0.002)  # uniform in log σ̄, as EDM's c_noise
    assert torch.allclose(u, expected) and bool((u.diff() > 0).all())
    Diffusion(Recorder(), DiffusionConfig()).eps(torch.zeros(4, 2, dtype=torch.float64), t)
    assert torch.equal(seen[-1], t)  # configs without the key: DDPM's t
    from ddib.errors import DDIBError

    with pytest.raises(DDIBError, match="unknown noise input"):
        DiffusionConfig(noise_input="sigma")
