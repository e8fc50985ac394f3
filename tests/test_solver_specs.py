"""The solver table: every caller's view of a solver comes from its spec, and a new solver is one function and one
spec."""

import math

import pytest
import torch

from ddib.bridge import ode, solvers
from ddib.bridge.grids import sigma_grid
from ddib.bridge.solvers import GRADIENT, SEARCH, SOLVERS, SolverSpec, spec
from ddib.errors import DDIBError

from .problems import gaussian_flow, gaussian_model

MEAN, STD = torch.tensor([0.8, -0.3], dtype=torch.float64), 0.3


def test_the_views_are_the_table():
    fixed = [name for name, s in SOLVERS.items() if s.fixed]
    assert list(ode.FIXED_SOLVERS) == fixed and list(ode.EVALS_PER_STEP) == fixed
    assert ode.ADAPTIVE_SOLVERS == tuple(name for name in SOLVERS if name not in fixed)
    assert ode.EVALS_PER_STEP == {"euler": 1, "ddim": 1, "dpm2m": 1, "unipc": 1, "midpoint": 2, "heun2": 2,
                                  "heun3": 3, "rk4": 4}  # fmt: skip
    for name, s in SOLVERS.items():
        assert s.name == name and spec(name) is s
        assert set(s.tuning) <= {SEARCH, GRADIENT} and (SEARCH in s.tuning) == s.fixed
        assert GRADIENT not in s.tuning or s.corrections  # a gradient fit learns corrections
    with pytest.raises(DDIBError, match="unknown solver 'rk5'; choose one of euler, ddim"):
        spec("rk5")


def test_options_follow_the_spec():
    assert math.isinf(ode.ODEOptions("unipc").rho) and ode.ODEOptions("heun2").rho == 7.0
    assert ode.ODEOptions("ddim", 10, rho=math.inf).describe() == "ddim × 10 steps"  # its grid is uniform in t
    assert ode.ODEOptions("heun2", 10, rho=math.inf).describe() == "heun2 × 10 steps, log-SNR uniform grid"
    assert ode.expected_nfe(ode.ODEOptions("rk4", 5)) == 20
    model = gaussian_model(MEAN, STD)
    grid = ode.step_grid(model, ode.ODEOptions("ddim", 8), "encode")
    torch.testing.assert_close(grid, sigma_grid(model, 8, uniform_t=True), rtol=0, atol=0)
    with pytest.raises(DDIBError, match="corrections are for unipc, not dpm2m"):
        ode.encode(model, MEAN[None], ode.ODEOptions("dpm2m", 2), grid=grid[:3], corrections=[[], [0.0]])


def ralston(drift, x_bar, grid):
    """Ralston's second-order Runge–Kutta method (Ralston 1962)."""
    for s, t in zip(grid[:-1], grid[1:], strict=True):
        k1 = drift(s, x_bar)
        k2 = drift(s + 2 * (t - s) / 3, x_bar + 2 * (t - s) / 3 * k1)
        x_bar = x_bar + (t - s) * (k1 + 3 * k2) / 4
    return x_bar


def test_a_new_solver_is_one_function_and_one_spec(monkeypatch):
    monkeypatch.setitem(SOLVERS, "ralston", SolverSpec("ralston", ralston, order=2, evals_per_step=2, tuning=(SEARCH,)))
    model = gaussian_model(MEAN, STD)
    x = MEAN + STD * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    options, stats = ode.ODEOptions("ralston", 40), ode.SolveStats()
    z = ode.encode(model, x, options, stats)
    assert stats.nfe == ode.expected_nfe(options) == 80 and options.describe() == "ralston × 40 steps"
    assert (z - gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)).abs().max() < 1e-2
    assert solvers.spec("ralston").order == 2
