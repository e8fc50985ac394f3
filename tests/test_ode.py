"""Known-answer tests of the bridge: Gaussian data, whose ε is exact, so the ODE flow is known in closed form."""

import math

import pytest
import torch

from ddib.bridge import ode, solvers
from ddib.bridge.grids import sigma_grid
from ddib.errors import DDIBError

from .problems import gaussian_flow, gaussian_mixture_model, gaussian_model, gaussian_v_model

MEAN = torch.linspace(-0.5, 0.5, 2 * 4 * 4, dtype=torch.float64).reshape(2, 4, 4)
STD = 0.5

# Fixed-step budgets that reach ~1e-3 on this problem, and the adaptive tolerance.
FIXED_STEPS = {"euler": 400, "ddim": 400, "dpm2m": 60, "unipc": 40, "midpoint": 60, "heun2": 60, "heun3": 40, "rk4": 30}
ADAPTIVE_RTOL = {"dopri5": 1e-8, "dopri8": 1e-8, "bosh3": 1e-6, "fehlberg2": 1e-6, "adaptive_heun": 1e-6}


@pytest.fixture(scope="module")
def problem():
    model = gaussian_model(MEAN, STD)
    x = MEAN + STD * torch.randn(6, *MEAN.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return model, x


@pytest.mark.parametrize("solver", ode.SOLVERS)
def test_encode_matches_exact_latent_and_decode_inverts(problem, solver):
    model, x = problem
    rtol = ADAPTIVE_RTOL.get(solver, 1e-8)
    opts = ode.ODEOptions(solver=solver, steps=FIXED_STEPS.get(solver, 1), rtol=rtol, atol=rtol)
    z = ode.encode(model, x, opts)
    exact = gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)
    tol = 3e-2 if solver in ("euler", "ddim") else 2e-2 if solver in ("heun2", "dpm2m") else 2e-3
    if not opts.is_fixed:
        tol = 1000 * rtol  # global error of an adaptive solve: a few hundred times the local tolerance
    assert (z - exact).abs().max().item() < tol
    x_back = ode.decode(model, z, opts)
    assert (x_back - x).abs().max().item() < tol


def test_adaptive_error_follows_tolerance(problem):
    model, x = problem
    exact = gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)
    errs = [
        (ode.encode(model, x, ode.ODEOptions("dopri5", rtol=tol, atol=tol)) - exact).abs().max() for tol in (1e-3, 1e-7)
    ]
    assert errs[1] < errs[0] / 100


def test_adaptive_step_underflow_is_a_clear_error(problem, monkeypatch):
    """A tolerance below what the dtype can resolve makes torchdiffeq assert; the user gets a DDIBError instead."""

    def underflowing_odeint(*args, **kwargs):
        raise AssertionError("underflow in dt 0.0")

    monkeypatch.setattr(solvers, "_odeint", lambda: underflowing_odeint)
    model, x = problem
    with pytest.raises(DDIBError, match=r"dopri5 \(rtol=1e-06, atol=1e-06\) could not meet its tolerance"):
        ode.encode(model, x, ode.ODEOptions("dopri5", rtol=1e-6, atol=1e-6))


def test_dpm2m_is_second_order_where_euler_is_first(problem):
    """At the same NFE DPM-Solver++(2M) beats Euler/DDIM, and its error falls ~4× per doubling of steps."""
    model, x = problem
    exact = gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)

    def err(solver, n):
        return (ode.encode(model, x, ode.ODEOptions(solver, steps=n)) - exact).abs().max().item()

    assert err("dpm2m", 20) < err("euler", 20) / 4
    assert err("dpm2m", 40) < err("dpm2m", 20) / 3


@pytest.mark.parametrize("encoding", [True, False])
def test_unipc_is_at_least_third_order_and_beats_dpm2m(problem, encoding):
    """The predictor–corrector's error falls ≥ 8× per doubling of steps (third order or better), either direction."""
    model, x = problem
    start = x if encoding else gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)
    exact = gaussian_flow(model, x, MEAN, STD, 0.0, 1.0) if encoding else x
    run = ode.encode if encoding else ode.decode

    def err(solver, n):
        return (run(model, start, ode.ODEOptions(solver, steps=n)) - exact).abs().max().item()

    assert err("unipc", 40) < err("unipc", 20) / 8
    assert err("unipc", 20) < err("dpm2m", 20) / 3


def test_default_solver_meets_the_one_level_goal_where_the_drift_is_smooth():
    """Two Gaussian-mixture 'domains' of 8 blob images each (exact ε, nonlinear, smooth in t): the default solver
    (unipc × 20, 20 NFE per direction) translates within 1/255 RMS of a converged solve; 10 steps do not."""
    g = torch.Generator().manual_seed(0)
    axis = torch.linspace(-1, 1, 16, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")

    def rand(*shape):
        return torch.rand(shape, generator=g, dtype=torch.float64)

    def blobs(k):  # k images: one coloured Gaussian blob each on a −1 background, like coloured digits
        centre, width = rand(k, 2, 1, 1) - 0.5, 0.2 + 0.3 * rand(k, 1, 1)
        blob = torch.exp(-((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2) / (2 * width**2))
        colour = rand(k, 3, 1, 1)
        return 2 * colour * blob[:, None] - 1

    source_means, target_means = blobs(8), blobs(8)
    source, target = gaussian_mixture_model(source_means, 0.1), gaussian_mixture_model(target_means, 0.1)
    x = source_means + 0.1 * torch.randn(source_means.shape, generator=g, dtype=torch.float64)
    reference = ode.translate(source, target, x, ode.ODEOptions("dpm2m", steps=2000))
    level = 1 / 127.5  # 1/255 of the [−1, 1] range

    def distance(steps):
        return (ode.translate(source, target, x, ode.ODEOptions(steps=steps)) - reference).pow(2).mean().sqrt().item()

    assert ode.DEFAULT_STEPS == 20 and distance(20) < level < distance(10)


def test_solvers_default_to_their_measured_grid():
    assert math.isinf(ode.ODEOptions("unipc").rho) and math.isinf(ode.ODEOptions("dpm2m").rho)
    assert ode.ODEOptions("midpoint").rho == ode.ODEOptions("rk4").rho == 7.0
    assert "grid" not in ode.ODEOptions("unipc").describe()
    assert "EDM ρ=7 grid" in ode.ODEOptions("unipc", rho=7.0).describe()


@pytest.mark.parametrize("solver", ["euler", "heun2", "rk4"])
def test_fixed_step_error_decreases_with_steps(problem, solver):
    model, x = problem
    exact = gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)
    errs = [(ode.encode(model, x, ode.ODEOptions(solver, steps=n)) - exact).abs().max().item() for n in (5, 20, 80)]
    assert errs[0] > errs[1] > errs[2]


@pytest.mark.parametrize(
    "solver,per_step",
    [("euler", 1), ("ddim", 1), ("dpm2m", 1), ("unipc", 1), ("midpoint", 2), ("heun2", 2), ("heun3", 3), ("rk4", 4)],
)
def test_nfe_counts(problem, solver, per_step):
    model, x = problem
    calls = {"n": 0}
    real = model.net.forward

    def counting(*a):
        calls["n"] += 1
        return real(*a)

    model.net.forward = counting
    try:
        stats = ode.SolveStats()
        ode.translate(model, model, x, ode.ODEOptions(solver, steps=7), stats)
    finally:
        del model.net.forward
    assert stats.per_solve == [7 * per_step, 7 * per_step]
    assert stats.nfe == calls["n"] == 14 * per_step


@pytest.mark.parametrize("solver", ode.ADAPTIVE_SOLVERS)
def test_adaptive_solves_stay_inside_the_noise_range(problem, solver, monkeypatch):
    """torchdiffeq steps past the end and interpolates back; no σ̄ outside [σ̄_min, σ̄_max] may reach the model (the
    log-SNR embedding is NaN below σ̄_min), and the last step must still end exactly at the span's end."""
    model, x = problem
    seen, drift_of = [], ode.pf_ode_drift

    def spying_drift(m, counter):
        drift = drift_of(m, counter)
        return lambda sigma_bar, x_bar: (seen.append(float(sigma_bar)), drift(sigma_bar, x_bar))[1]

    monkeypatch.setattr(ode, "pf_ode_drift", spying_drift)
    sched, tol = model.schedule, ADAPTIVE_RTOL[solver]
    opts = ode.ODEOptions(solver, rtol=tol, atol=tol)
    span = pytest.approx(sched.sigma_min, rel=1e-12), pytest.approx(sched.sigma_max, rel=1e-12)
    z = ode.encode(model, x, opts)
    assert (min(seen), max(seen)) == span
    seen.clear()
    x_back = ode.decode(model, z, opts)
    assert (min(seen), max(seen)) == span
    assert (z - gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)).abs().max().item() < 1000 * tol
    assert (x_back - x).abs().max().item() < 1000 * tol


def test_adaptive_nfe_counts_every_evaluation(problem):
    model, x = problem
    stats = ode.SolveStats()
    ode.encode(model, x, ode.ODEOptions("dopri5", rtol=1e-5, atol=1e-5), stats)
    assert stats.solves == 1 and stats.nfe > 6 and stats.nfe % 6 == 2  # two for the initial step, six per step


def test_ddim_is_the_deterministic_ddim_update(problem):
    """One ddim step from σ̄_a to σ̄_b: x̄_b = x̄_a + (σ̄_b − σ̄_a)·ε̂ (Song et al. 2021a, eq. 13)."""
    model, x = problem
    z = ode.encode(model, x, ode.ODEOptions("ddim", steps=1))
    sched = model.schedule
    a0, s0 = sched.alpha_sigma(torch.tensor(0.0, dtype=torch.float64))
    a1, _ = sched.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    eps = model.eps(x, torch.tensor(0.0, dtype=torch.float64))
    x_bar_1 = x / a0 + (sched.sigma_max - sched.sigma_min) * eps
    assert torch.allclose(z, x_bar_1 * a1, atol=1e-12)


def test_translation_is_deterministic(problem):
    model, x = problem
    other = gaussian_model(-MEAN, 0.3)
    a = ode.translate(model, other, x.float(), ode.ODEOptions())
    b = ode.translate(model, other, x.float(), ode.ODEOptions())
    assert torch.equal(a, b)


def test_translation_between_gaussians_is_the_affine_map(problem):
    model, x = problem
    other = gaussian_model(-MEAN, 0.3)
    y = ode.translate(model, other, x, ode.ODEOptions("dopri5", rtol=1e-8, atol=1e-8))
    z = gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)
    expected = gaussian_flow(other, z, -MEAN, 0.3, 1.0, 0.0)
    assert (y - expected).abs().max().item() < 1e-5


def test_a_v_model_bridges_like_the_eps_model(problem):
    model, x = problem
    v_model, other = gaussian_v_model(MEAN, STD), gaussian_v_model(-MEAN, 0.3)
    opts = ode.ODEOptions()  # the default solver: the ε the solvers see is the same either way
    assert torch.allclose(ode.encode(v_model, x, opts), ode.encode(model, x, opts), atol=1e-10)
    y = ode.translate(v_model, other, x, ode.ODEOptions("dopri5", rtol=1e-8, atol=1e-8))
    expected = gaussian_flow(other, gaussian_flow(model, x, MEAN, STD, 0.0, 1.0), -MEAN, 0.3, 1.0, 0.0)
    assert (y - expected).abs().max().item() < 1e-5


def test_bad_options_are_clear_errors(problem):
    with pytest.raises(DDIBError, match="unknown solver"):
        ode.ODEOptions("rk45")
    with pytest.raises(DDIBError, match="positive integer"):
        ode.ODEOptions("euler", steps=0)
    with pytest.raises(DDIBError, match="positive"):
        ode.ODEOptions("dopri5", rtol=0.0)
    model, _ = problem
    small = gaussian_model(torch.zeros(2, 2, 2, dtype=torch.float64), 1.0)
    with pytest.raises(DDIBError, match="4×4 images of 2 channels and 2×2 images of 2 channels"):
        ode.translate(model, small, torch.zeros(1, *MEAN.shape, dtype=torch.float64))
    points = gaussian_model(torch.zeros(2, dtype=torch.float64), 1.0)
    with pytest.raises(DDIBError, match="and 2-D points"):
        ode.translate(model, points, torch.zeros(1, *MEAN.shape, dtype=torch.float64))


def test_points_share_the_code_path():
    """2-D point domains (B, 2) go through the same encode/decode as images."""
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    model = gaussian_model(mean, 0.7)
    x = mean + 0.7 * torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = ode.encode(model, x, ode.ODEOptions("rk4", steps=40))
    assert (z - gaussian_flow(model, x, mean, 0.7, 0.0, 1.0)).abs().max().item() < 1e-3


def test_bench_solvers_cycle_column_is_exact_for_gaussians(problem):
    from ddib.bench import translate as bench

    model, x = problem
    other = gaussian_model(-MEAN, 0.3)
    seen = []

    def score(sources, outputs, cycled):
        seen.append(cycled)
        return {"hue_error_median": 1.5, "cycle_rmse": 99.0}  # cycle_rmse is not a row field: the row has levels

    tight = ode.ODEOptions("dopri5", rtol=1e-9, atol=1e-9)
    rows = bench.bench_solvers(model, other, x, [("ddim", 5), ("rk4", 30)], [("dopri5", 1e-8)], tight, score=score)
    coarse, fine, adaptive = rows
    assert adaptive.cycle_rms < 1e-3 and fine.cycle_rms < 1e-2 < coarse.cycle_rms
    assert adaptive.to_reference_rms < 1e-3 < coarse.to_reference_rms
    assert adaptive.latent_to_reference_rms < 1e-5 < coarse.latent_to_reference_rms
    assert adaptive.decode_only_to_reference_rms < 1e-3 < coarse.decode_only_to_reference_rms
    ddim5 = ode.ODEOptions("ddim", 5)
    per_image = ode.translate(model, other, x, ddim5) - bench.reference_solve(model, other, x, tight).translation
    per_image = per_image.pow(2).flatten(1).mean(1).sqrt() * bench.LEVELS
    assert coarse.to_reference_median_image == pytest.approx(per_image.quantile(0.5).item(), rel=1e-6)
    assert coarse.images_over_1_level == (per_image > 1).double().mean().item() > 0
    squares = per_image.double().square().sort().values
    assert coarse.to_reference_rms_but_worst == pytest.approx(squares[:-1].mean().sqrt().item(), rel=1e-6)
    assert coarse.to_reference_rms_but_worst < coarse.to_reference_rms
    assert adaptive.images_over_1_level == 0.0 and adaptive.to_reference_median_image < 1e-3
    back = ode.translate(other, model, ode.translate(model, other, x, ddim5), ddim5)
    assert coarse.cycle_rms == pytest.approx((back - x).pow(2).mean().sqrt().item() * bench.LEVELS)
    assert all(r.hue_error_median == 1.5 and r.frechet_distance is None for r in rows)
    assert len(seen) == 3 and all(c is not None for c in seen)
    rows = bench.bench_solvers(model, other, x, [("ddim", 5)], [], tight, score=score, cycle=False)
    assert len(rows) == 1 and rows[0].cycle_rms is None and seen[-1] is None


def test_reference_reports_its_own_convergence(problem):
    """The bench reference's check (the same solve at half its budget) is small when converged, large when not."""
    from ddib.bench import translate as bench

    model, x = problem
    other = gaussian_model(-MEAN, 0.3)
    exact = gaussian_flow(other, gaussian_flow(model, x, MEAN, STD, 0.0, 1.0), -MEAN, 0.3, 1.0, 0.0)
    tight = bench.reference_solve(model, other, x, bench.parse_reference("dopri5:1e-9"), check=True)
    loose = bench.reference_solve(model, other, x, bench.parse_reference("ddim:4"), check=True)
    assert (tight.translation - exact).abs().max().item() * bench.LEVELS < 1e-3
    assert tight.check_rms < 1e-2 < loose.check_rms
    half = ode.translate(model, other, x, ode.ODEOptions("ddim", steps=2))
    assert loose.check_rms == pytest.approx((half - loose.translation).pow(2).mean().sqrt().item() * bench.LEVELS)
    assert "from the same solve at ddim × 2 steps" in loose.describe()
    unchecked = bench.reference_solve(model, other, x, bench.parse_reference("unipc:40"))
    assert unchecked.check_rms is None and unchecked.describe() == "unipc × 40 steps"
    rows = bench.bench_solvers(model, other, x, [("ddim", 4)], [], loose, cycle=False)
    assert rows[0].to_reference_rms == 0.0  # measured against the given reference, not a new solve


@pytest.mark.parametrize(
    "spec, solver, budget",
    [("dopri5:1e-6", "dopri5", 1e-6), ("unipc:200", "unipc", 200), ("bosh3:0.001", "bosh3", 1e-3)],
)
def test_parse_reference(spec, solver, budget):
    from ddib.bench import translate as bench

    opts = bench.parse_reference(spec)
    assert opts.solver == solver
    assert (opts.steps if opts.is_fixed else opts.rtol) == budget
    assert opts.is_fixed or opts.atol == budget
    coarse = bench.coarser(opts)
    assert (coarse.steps == budget // 2) if opts.is_fixed else (coarse.rtol == pytest.approx(10 * budget))


@pytest.mark.parametrize("spec", ["dopri5", "unipc:1e-6", "rk5:10", "dopri5:tight", "unipc:0", "dopri5:-1"])
def test_parse_reference_rejects_bad_specs(spec):
    from ddib.bench import translate as bench

    with pytest.raises(DDIBError, match=f"--reference '{spec}': give SOLVER:STEPS"):  # not another option's name
        bench.parse_reference(spec)


def test_log_snr_grid_is_geometric_and_as_accurate(problem):
    model, x = problem
    grid = sigma_grid(model, 8, rho=math.inf)
    sched = model.schedule
    assert grid[0] == sched.sigma_min and grid[-1] == sched.sigma_max
    ratios = grid[1:] / grid[:-1]
    assert torch.allclose(ratios, torch.full_like(ratios, (sched.sigma_max / sched.sigma_min) ** (1 / 8)))
    assert torch.allclose(sigma_grid(model, 8, rho=1e6), grid, rtol=1e-4)  # the limit of EDM's grid
    opts = ode.ODEOptions("midpoint", steps=60, rho=math.inf)
    z = ode.encode(model, x, opts)
    assert (z - gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)).abs().max().item() < 1e-3
    assert "log-SNR uniform grid" in opts.describe() and "grid" not in ode.ODEOptions("midpoint").describe()
