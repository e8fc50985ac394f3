"""ODE likelihoods against closed-form Gaussian log-densities."""

import math

import pytest
import torch

from ddib.errors import DDIBError
from ddib.likelihood.ode_likelihood import DEQUANT_BIN, dequantize, log_likelihood

from .problems import correlated_gaussian, gaussian_model


def gaussian_log_density(model, x, mean, std):
    """log N(x₁; 0, I) + D·log|∂x₁/∂x₀| for the exact affine flow x₁ = α₁μ + c(x₀ − α₀μ), c² = v₁/v₀.

    This is the model's density with ddib's N(0, I) prior at t = 1; it differs from the Gaussian's own
    log N(x; α₀μ, v₀) only by the prior's mismatch at σ̄_max = 80 (about 1e-2 nats here).
    """
    a0, s0 = model.schedule.alpha_sigma(torch.tensor(0.0, dtype=torch.float64))
    a1, s1 = model.schedule.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    v0, v1 = a0**2 * std**2 + s0**2, a1**2 * std**2 + s1**2
    c = torch.sqrt(v1 / v0)
    x1 = a1 * mean + c * (x - a0 * mean)
    d = x[0].numel()
    return -0.5 * (x1**2).reshape(len(x), -1).sum(1) - 0.5 * d * math.log(2 * math.pi) + d * torch.log(c)


def test_prior_mismatch_is_small():
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    model = gaussian_model(mean, 0.8)
    x = mean + 0.8 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a0, s0 = model.schedule.alpha_sigma(torch.tensor(0.0, dtype=torch.float64))
    v0 = a0**2 * 0.64 + s0**2
    true = -0.5 * ((x - a0 * mean) ** 2).sum(1) / v0 - torch.log(2 * math.pi * v0)
    assert (gaussian_log_density(model, x, mean, 0.8) - true).abs().max() < 0.05


def test_exact_divergence_matches_closed_form_2d():
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    model = gaussian_model(mean, 0.8)
    x = mean + 0.8 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = log_likelihood(model, x, exact=True, rtol=1e-7, atol=1e-7)
    assert torch.allclose(res.log_p, gaussian_log_density(model, x, mean, 0.8), atol=1e-4)
    assert torch.all(res.stderr == 0) and res.nfe > 0


def test_step_size_underflow_is_a_clear_error(monkeypatch):
    from ddib.bridge import solvers

    def underflowing_odeint(*args, **kwargs):
        raise AssertionError("underflow in dt 0.0")

    monkeypatch.setattr(solvers, "_odeint", lambda: underflowing_odeint)
    model = gaussian_model(torch.zeros(2, dtype=torch.float64), 0.8)
    with pytest.raises(DDIBError, match=r"dopri5 \(rtol=1e-09, atol=1e-09\) could not meet its tolerance"):
        log_likelihood(model, torch.zeros(3, 2, dtype=torch.float64), exact=True, rtol=1e-9, atol=1e-9)


def test_hutchinson_agrees_with_exact_within_its_error():
    # A correlated Gaussian: its Jacobian has off-diagonal terms, so Rademacher probes have real variance.
    g = torch.Generator().manual_seed(1)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    cov = a @ a.T / 12 + 0.1 * torch.eye(12, dtype=torch.float64)
    mean = torch.linspace(-0.3, 0.3, 12, dtype=torch.float64).reshape(3, 2, 2)
    model = correlated_gaussian(mean, cov)
    x = mean + (torch.linalg.cholesky(cov) @ torch.randn(12, 8, generator=g, dtype=torch.float64)).T.reshape(8, 3, 2, 2)
    exact = log_likelihood(model, x, exact=True, rtol=1e-6, atol=1e-6)
    est = log_likelihood(model, x, exact=False, probes=16, rtol=1e-6, atol=1e-6,
                         generator=torch.Generator().manual_seed(2))  # fmt: skip
    assert torch.all(est.stderr > 0)
    assert torch.all((est.log_p - exact.log_p).abs() <= 4 * est.stderr + 1e-3)
    many = log_likelihood(model, x, exact=False, probes=64, rtol=1e-6, atol=1e-6,
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert many.stderr.mean() < est.stderr.mean()  # error shrinks as 1/√probes


def test_bits_per_dim_of_dequantised_data():
    u8 = torch.randint(0, 256, (4, 3, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x = dequantize(u8, torch.Generator().manual_seed(1))
    assert x.min() >= -1 and x.max() < 1
    assert torch.equal(((x + 1) * 128).floor().to(torch.uint8), u8)  # each value stays in its own bin
    model = gaussian_model(torch.zeros(3, 2, 2, dtype=torch.float64), 1.0)
    res = log_likelihood(model, x.double(), exact=True, rtol=1e-6, atol=1e-6)
    bpd, _ = res.bits_per_dim(DEQUANT_BIN)
    expected = -(gaussian_log_density(model, x.double(), torch.zeros(3, 2, 2, dtype=torch.float64), 1.0)
                 + 12 * math.log(DEQUANT_BIN)) / (12 * math.log(2))  # fmt: skip
    assert torch.allclose(bpd, expected, atol=1e-4)


def test_probes_must_be_positive():
    model = gaussian_model(torch.zeros(2, dtype=torch.float64), 1.0)
    with pytest.raises(DDIBError, match="probes"):
        log_likelihood(model, torch.zeros(1, 2, dtype=torch.float64), probes=0)
