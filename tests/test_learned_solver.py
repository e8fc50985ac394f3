"""Solves learned by gradient through the solver: exact start, a known optimum on Gaussian data, the validation
guarantee, the joint fit of a bridge's two ends, and their use by later solves and the CLI."""

import json
import math
import shutil

import pytest
import torch

from ddib.bridge import learned_solver, ode
from ddib.bridge.grids import sigma_grid
from ddib.bridge.learned_solver import LearnedSolve, correction_sizes
from ddib.bridge.tuning import LEVELS, TuningData, encode_on, fit_solver, rms, tune_bridge
from ddib.errors import DDIBError

from .conftest import make_blob_images, run_cli
from .problems import gaussian_flow, gaussian_model

MEAN, STD = torch.tensor([0.8, -0.3], dtype=torch.float64), 0.3
TARGET_MEAN, TARGET_STD = torch.tensor([-0.5, 0.2], dtype=torch.float64), 0.6
EXACT = ode.ODEOptions("dopri5", rtol=1e-10, atol=1e-10)
UNIPC3 = ode.ODEOptions("unipc", 3)


def _data(seed: int, n: int) -> TuningData:
    g = torch.Generator().manual_seed(seed)
    images = MEAN + STD * torch.randn(n, 2, dtype=torch.float64, generator=g)
    noise = torch.randn(n, 2, dtype=torch.float64, generator=g)
    half = n // 2
    return TuningData(images[:half], images[half:], noise[:half], noise[half:])


def test_a_learned_solve_starts_as_the_solve_it_was_built_from():
    model = gaussian_model(MEAN, STD)
    grid = sigma_grid(model, 6, 7.0)
    solve = LearnedSolve(model, grid)
    torch.testing.assert_close(solve.grid(), grid, rtol=1e-12, atol=0)
    assert [len(c) for c in solve.corrections()] == correction_sizes(6) == [1, 2, 3, 3, 3, 2]
    x = _data(0, 16).tune_images
    torch.testing.assert_close(encode_on(model, x, UNIPC3, solve.grid(), solve.corrections()),
                               encode_on(model, x, UNIPC3, grid), rtol=1e-12, atol=1e-12)  # fmt: skip
    # The solve is differentiable in its nodes and coefficients (and only then keeps a graph).
    z = ode.encode(model, x, UNIPC3, grid=solve.grid(), corrections=solve.corrections())
    z.square().sum().backward()
    assert solve.logits.grad.abs().sum() > 0 and all(c.grad is not None for c in solve.coefficients)
    assert not ode.encode(model, x, UNIPC3, grid=grid).requires_grad
    with pytest.raises(ValueError, match="do not fit"):
        LearnedSolve(model, grid, [[0.0]] * 6)


def test_gradient_fit_finds_a_nearly_exact_three_step_solve_on_an_isotropic_gaussian():
    # Exact corrections exist here (tests/test_solver_tuning.py fits them node by node); descent from none, through
    # the whole solve, must get most of the way there in both directions. They are large for the 3-step encode
    # (tens), hence the learning rate.
    model = gaussian_model(MEAN, STD)
    data = _data(3, 64)
    entry = fit_solver(model, UNIPC3, EXACT, data, iterations=150, batch_size=16, lr=0.1)
    for direction in ("encode", "decode"):
        part = entry.direction(direction)
        errors = part.errors
        assert errors.method == "gradient" and errors.kept == "tuned"
        assert errors.val_tuned < errors.val_default / 20, errors
        assert len(part.grid) == 4 and len(part.corrections) == 3
    model.solver_grids[model.grid_key("unipc", 3)] = entry.to_json()
    exact = gaussian_flow(model, data.val_images, MEAN, STD, 0.0, 1.0)
    assert ode.describe_solve(UNIPC3, model) == "unipc × 3 steps, tuned grid and coefficients"
    tuned = entry.encode.errors.val_tuned
    assert rms(ode.encode(model, data.val_images, UNIPC3), exact) == pytest.approx(tuned)
    nodes_only = fit_solver(model, UNIPC3, EXACT, data, ("encode",), iterations=20, batch_size=16, coefficients=False)
    assert nodes_only.encode.corrections is None and nodes_only.decode is None


def test_the_fit_keeps_the_start_when_nothing_beats_it_on_validation():
    model = gaussian_model(MEAN, STD)
    solve = LearnedSolve(model, sigma_grid(model, 4, math.inf))
    start = [p.detach().clone() for p in solve.parameters()]
    checks = iter(range(100))  # every later validation is worse than the first
    result = learned_solver.fit([solve], lambda idx: solve.grid().sum() + sum(c.sum() for c in solve.coefficients),
                                8, lambda: float(next(checks)), iterations=12, every=4)  # fmt: skip
    assert (result.val_start, result.val_best, result.best_iteration) == (0.0, 0.0, 0)
    for before, after in zip(start, solve.parameters(), strict=True):
        torch.testing.assert_close(after.detach(), before, rtol=0, atol=0)


def test_a_bridge_is_fitted_jointly_on_the_translation_and_translate_uses_it():
    source, target = gaussian_model(MEAN, STD), gaussian_model(TARGET_MEAN, TARGET_STD)
    data = _data(6, 48)
    encode, decode = tune_bridge(source, target, UNIPC3, EXACT, data, iterations=60, batch_size=16)
    errors = encode.encode.errors
    assert errors == decode.decode.errors and errors.unit == "8-bit levels RMS of the translation"
    assert errors.val_tuned < errors.val_default / 5
    assert encode.encode.corrections is not None and encode.decode is None
    assert decode.decode.corrections is not None and decode.encode is None
    # The recorded error is the translation's with the stored grids, against the exact bridge.
    source.solver_grids[source.grid_key("unipc", 3)] = encode.to_json()
    target.solver_grids[target.grid_key("unipc", 3)] = decode.to_json()
    x = data.val_images
    exact = gaussian_flow(target, gaussian_flow(source, x, MEAN, STD, 0.0, 1.0), TARGET_MEAN, TARGET_STD, 1.0, 0.0)
    assert LEVELS * rms(ode.translate(source, target, x, UNIPC3), exact) == pytest.approx(errors.val_tuned, 1e-6)
    assert ode.describe_solve(UNIPC3, source, target) == "unipc × 3 steps, tuned grid and coefficients"
    with pytest.raises(DDIBError, match="learns unipc"):
        tune_bridge(source, target, ode.ODEOptions("dpm2m", 3), EXACT, data, iterations=1)


def test_cli_fits_a_bridge_by_gradient_and_translate_uses_it(tmp_path, tiny_models):
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    images = make_blob_images(tmp_path / "reds-more", 8, (230, 30, 30), seed=11)
    common = ["--steps", "2", "-n", "4", "--val", "4", "--reference", "unipc:12", "--inputs", str(images),
              "--models-dir", str(models), "--iterations", "4", "--batch-size", "2"]  # fmt: skip
    r = run_cli("tune-solver", "--from", "reds", "--to", "blues", *common)  # unipc: gradient by default
    assert r.returncode == 0, r.stderr
    assert "jointly for the bridge reds → blues" in r.stdout and "unipc × 2 translation (encode and decode)" in r.stdout
    reds, blues = (json.loads((models / d / "config.json").read_text())["solver_grids"]["unipc:2"] for d in
                   ("reds", "blues"))  # fmt: skip
    assert set(reds["errors"]) == {"encode"} and set(blues["errors"]) == {"decode"}
    assert reds["errors"]["encode"]["method"] == "gradient" and reds["errors"]["encode"]["bridge"] == "reds → blues"
    assert reds["errors"]["encode"]["val_tuned"] <= reds["errors"]["encode"]["val_default"]
    src = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=3)
    r = run_cli("translate", str(src), "--from", "reds", "--to", "blues", "--steps", "2", "--models-dir", str(models),
                "--out-dir", str(tmp_path / "out"))  # fmt: skip
    assert r.returncode == 0 and "unipc × 2 steps, tuned grid" in r.stdout, r.stderr
    r = run_cli("tune-solver", "--domain", "reds", "--method", "gradient", "--direction", "decode", *common)
    assert r.returncode == 0 and "unipc × 2 decode: validation" in r.stdout, r.stderr
    r = run_cli("tune-solver", "--from", "reds", "--to", "blues", "--direction", "encode", *common)
    assert r.returncode != 0 and "fits a bridge's encode and decode together" in r.stderr
    r = run_cli("tune-solver", "--domain", "reds", "--method", "gradient", "--solver", "dpm2m", *common)
    assert r.returncode != 0 and "use --method search for dpm2m" in r.stderr
    r = run_cli("tune-solver", "--domain", "reds", "--method", "annealing", *common)
    assert r.returncode != 0 and "--method annealing" in r.stderr
