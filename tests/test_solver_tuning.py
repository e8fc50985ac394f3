"""Per-model step grids: a known optimum on Gaussian data, the validation guarantee, and their use in solves."""

import csv
import json
import math
import shutil

import pytest
import torch

from ddib.bridge import ode
from ddib.bridge.grids import sigma_grid, tuned_corrections, tuned_grid
from ddib.bridge.tuned import ImageCounts, TunedDirection, TunedSolve, TuningErrors, stored
from ddib.bridge.tuning import (
    LEVELS,
    TuningData,
    decode_on,
    encode_on,
    fit_corrections,
    grid_from_positions,
    merge_entry,
    positions_of,
    refine_corrections,
    rms,
    tune_direction,
    tune_solver,
)
from ddib.model.registry import BUNDLED_DIR, load_domain_model

from .conftest import make_blob_images, run_cli
from .problems import gaussian_flow, gaussian_model

# Fixed-step solvers for solves on an explicit grid (the step count is the grid's).
UNIPC, DPM2M, EULER = (ode.ODEOptions(name) for name in ("unipc", "dpm2m", "euler"))

MEAN = torch.tensor([0.8, -0.3], dtype=torch.float64)
STD = 0.3


def _gaussian_tuning_data(seed: int, n: int):
    """n draws of the Gaussian and n N(0, I) latents; the first half of each tunes, the second validates."""
    g = torch.Generator().manual_seed(seed)
    images = MEAN + STD * torch.randn(n, 2, dtype=torch.float64, generator=g)
    noise = torch.randn(n, 2, dtype=torch.float64, generator=g)
    half = n // 2
    return images, noise, TuningData(images[:half], images[half:], noise[:half], noise[half:])


def _exact_latents(model, x):
    return gaussian_flow(model, x, MEAN, STD, 0.0, 1.0)


def test_one_free_node_lands_on_the_brute_force_optimum():
    model = gaussian_model(MEAN, STD)
    x = MEAN + STD * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = _exact_latents(model, x)

    def error(grid, validation=False):
        return rms(encode_on(model, x, EULER, grid), exact)

    scan = [error(grid_from_positions(model, [k / 400])) for k in range(1, 400)]
    best = min(scan)
    default = sigma_grid(model, 2, math.inf)
    result = tune_direction(model, default, error, budget=60)
    assert result.kept == "tuned" and result.val_tuned < result.val_default
    assert result.val_tuned <= best * 1.02  # within 2% of the scan's minimum over 399 node positions
    u = positions_of(model, torch.tensor(result.grid))[0]
    assert abs(u - (1 + scan.index(best)) / 400) < 0.03


def test_the_default_grid_is_kept_when_tuning_does_not_help_on_validation():
    model = gaussian_model(MEAN, STD)
    default = sigma_grid(model, 4, math.inf)

    def error(grid, validation):  # tuning data and validation data disagree about every move
        spread = sum((a - b) ** 2 for a, b in zip(positions_of(model, grid), [0.25, 0.5, 0.75], strict=True))
        return 1.0 - spread if not validation else 1.0 + spread

    result = tune_direction(model, default, error, budget=20)
    assert result.tune_tuned < result.tune_default and result.val_tuned > result.val_default
    assert result.kept == "default" and result.grid == default.tolist()


def test_tune_solver_improves_both_directions_and_solves_use_the_tuned_grid():
    model = gaussian_model(MEAN, STD)
    images, noise, data = _gaussian_tuning_data(seed=1, n=48)
    options = ode.ODEOptions("dpm2m", 3)
    entry = tune_solver(model, options, ode.ODEOptions("dopri5", rtol=1e-10, atol=1e-10), data, budget=40)
    for direction in ("encode", "decode"):
        errors = entry.direction(direction).errors
        assert errors.val_tuned < errors.val_default and errors.kept == "tuned"
    model.solver_grids[model.grid_key("dpm2m", 3)] = entry.to_json()
    x = images[24:]
    tuned = torch.tensor(entry.encode.grid, dtype=torch.float64)
    torch.testing.assert_close(ode.encode(model, x, options), encode_on(model, x, DPM2M, tuned), rtol=0, atol=0)
    z = noise[24:]
    decoded = decode_on(model, z, DPM2M, torch.tensor(entry.decode.grid, dtype=torch.float64))
    torch.testing.assert_close(ode.decode(model, z, options), decoded, rtol=0, atol=0)
    assert ode.describe_solve(options, model) == "dpm2m × 3 steps, tuned grid"
    untuned = ode.ODEOptions("dpm2m", 3, rho=math.inf, tuned=False)
    assert not torch.equal(ode.encode(model, x, untuned), ode.encode(model, x, options))
    assert ode.describe_solve(ode.ODEOptions("dpm2m", 4), model) == "dpm2m × 4 steps"  # no grid for 4 steps


def test_the_search_starts_from_the_best_whole_grid_shape():
    model = gaussian_model(MEAN, STD)
    default, shapes = sigma_grid(model, 6, math.inf), tuple(sigma_grid(model, 6, rho) for rho in (7.0, 30.0))
    target = positions_of(model, shapes[1])

    def error(grid, validation):  # smallest at the ρ = 30 grid
        return sum((a - b) ** 2 for a, b in zip(positions_of(model, grid), target, strict=True))

    result = tune_direction(model, default, error, budget=4, candidates=shapes)
    assert result.kept == "tuned" and result.val_tuned < 1e-12 < result.val_default
    assert result.evaluations == 4


def test_fitted_corrections_make_unipc_exact_on_an_isotropic_gaussian():
    # Every x̂0 difference is a multiple of x̄ − μ here, so one coefficient per step can land on the exact flow.
    model = gaussian_model(MEAN, STD)
    g = torch.Generator().manual_seed(3)
    x = MEAN + STD * torch.randn(64, 2, dtype=torch.float64, generator=g)
    z = torch.randn(64, 2, dtype=torch.float64, generator=g)
    exact_z, exact_x = _exact_latents(model, x), gaussian_flow(model, z, MEAN, STD, 1.0, 0.0)
    alpha_0, alpha_1 = model.schedule.alpha_ends
    grid = sigma_grid(model, 3, math.inf)
    encode_fit = fit_corrections(model, x[:32] / alpha_0, grid)
    decode_fit = fit_corrections(model, z[:32] / alpha_1, grid.flip(0))
    assert [len(c) for c in encode_fit] == [1, 2, 2]  # the x̂0 differences each step has
    plain = rms(encode_on(model, x[32:], UNIPC, grid), exact_z[32:])
    assert rms(encode_on(model, x[32:], UNIPC, grid, corrections=encode_fit), exact_z[32:]) < plain / 100
    plain = rms(decode_on(model, z[32:], UNIPC, grid), exact_x[32:])
    assert rms(decode_on(model, z[32:], UNIPC, grid, corrections=decode_fit), exact_x[32:]) < plain / 100


def test_zero_corrections_leave_unipc_as_it_is():
    model = gaussian_model(MEAN, STD)
    x = MEAN + STD * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    grid = sigma_grid(model, 5, math.inf)
    zeros = [[0.0] * k for k in (1, 2, 3, 3, 2)]
    torch.testing.assert_close(encode_on(model, x, UNIPC, grid, corrections=zeros),
                               encode_on(model, x, UNIPC, grid), rtol=0, atol=0)  # fmt: skip


def test_tune_solver_keeps_corrections_that_help_and_solves_use_them():
    model = gaussian_model(MEAN, STD)
    images, noise, data = _gaussian_tuning_data(seed=5, n=48)
    options = ode.ODEOptions("unipc", 3)
    entry = tune_solver(model, options, ode.ODEOptions("dopri5", rtol=1e-10, atol=1e-10), data, budget=10)
    for direction in ("encode", "decode"):
        errors = entry.direction(direction).errors
        assert errors.corrections == "kept" and errors.val_corrected < errors.val_tuned / 2
    model.solver_grids[model.grid_key("unipc", 3)] = entry.to_json()
    x = images[24:]
    tuned = torch.tensor(entry.encode.grid, dtype=torch.float64)
    expected = encode_on(model, x, UNIPC, tuned, corrections=entry.encode.corrections)
    torch.testing.assert_close(ode.encode(model, x, options), expected, rtol=0, atol=0)
    assert ode.describe_solve(options, model) == "unipc × 3 steps, tuned grid and coefficients"
    plain = tune_solver(model, options, ode.ODEOptions("dopri5", rtol=1e-10, atol=1e-10), data, budget=4,
                        coefficients=False)  # fmt: skip
    assert plain.encode.corrections is None and plain.encode.errors.corrections is None


def test_one_direction_tunes_alone_and_keeps_the_other_directions_grid():
    model = gaussian_model(MEAN, STD)
    images, noise, data = _gaussian_tuning_data(seed=2, n=32)
    options, ref = ode.ODEOptions("dpm2m", 3), ode.ODEOptions("dopri5", rtol=1e-10, atol=1e-10)
    both = tune_solver(model, options, ref, data, budget=10)
    decode_only = tune_solver(model, options, ref, data, budget=30, directions=("decode",))
    assert decode_only.encode is None and decode_only.decode.errors is not None
    merged = merge_entry(both, decode_only)
    assert merged.encode == both.encode and merged.decode == decode_only.decode  # nodes, corrections and errors
    assert set(merged.to_json()["errors"]) == {"encode", "decode"}
    model.solver_grids[model.grid_key("dpm2m", 3)] = decode_only.to_json()
    default = sigma_grid(model, 3, math.inf)
    torch.testing.assert_close(ode.encode(model, images, options), encode_on(model, images, DPM2M, default))


def test_bridge_tuning_measures_each_end_on_what_the_translation_feeds_it():
    # Two isotropic Gaussians with exact flows: the target's decode is affine with slope `slope`, so the encode's
    # error after it is exactly that slope times its latent error, and the decode's error is on the source's latents.
    target_mean, target_std = torch.tensor([-0.5, 0.2], dtype=torch.float64), 0.6
    source, target = gaussian_model(MEAN, STD), gaussian_model(target_mean, target_std)
    images, noise, data = _gaussian_tuning_data(seed=6, n=32)
    options, ref = ode.ODEOptions("dpm2m", 3), ode.ODEOptions("dopri5", rtol=1e-10, atol=1e-10)
    own = tune_solver(source, options, ref, data, budget=1, directions=("encode",), coefficients=False)
    bridged = tune_solver(source, options, ref, data, budget=1, directions=("encode",), target=target)
    one, zero = torch.ones(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    slope = (gaussian_flow(target, one, target_mean, target_std, 1.0, 0.0)
             - gaussian_flow(target, zero, target_mean, target_std, 1.0, 0.0))[0, 0].item()  # fmt: skip
    for key in ("val_default", "tune_default"):
        assert math.isclose(
            getattr(bridged.encode.errors, key), LEVELS * slope * getattr(own.encode.errors, key), rel_tol=1e-6
        )
    assert bridged.encode.errors.unit.startswith("8-bit levels")

    decode = tune_solver(target, options, ref, data, budget=1, directions=("decode",), source=source)
    z = torch.cat([_exact_latents(source, data.val_images), data.val_noise])
    default = sigma_grid(target, 3, math.inf)
    expected = LEVELS * rms(decode_on(target, z, DPM2M, default),
                            gaussian_flow(target, z, target_mean, target_std, 1.0, 0.0))  # fmt: skip
    assert math.isclose(decode.decode.errors.val_default, expected, rel_tol=1e-6)
    own_latents = tune_solver(target, options, ref, data, budget=1, directions=("decode",))
    assert not math.isclose(own_latents.decode.errors.val_default, expected, rel_tol=1e-2)
    with pytest.raises(ValueError, match="decode only"):
        tune_solver(target, options, ref, data, budget=1, directions=("encode",), source=source)


def test_cli_tunes_saves_and_translate_uses_the_grid(tmp_path, tiny_models):
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    images = make_blob_images(tmp_path / "reds-more", 8, (230, 30, 30), seed=11)
    tune = ["tune-solver", "--domain", "reds", "-n", "4", "--val", "4", "--method", "search", "--budget", "6",
            "--reference", "unipc:24", "--inputs", str(images), "--models-dir", str(models)]  # fmt: skip
    r = run_cli(*tune, "--steps", "5", "--direction", "encode", "--make-default")
    assert r.returncode != 0 and "would have no decode grid" in r.stderr  # a default needs both directions
    r = run_cli(*tune, "--steps", "5", "--direction", "encode")
    assert r.returncode == 0, r.stderr
    r = run_cli(*tune, "--steps", "3,4", "--make-default")
    assert r.returncode == 0, r.stderr
    assert "unipc × 3 encode: validation" in r.stdout and "unipc × 4 decode: validation" in r.stdout
    config = json.loads((models / "reds" / "config.json").read_text())
    grids = config["solver_grids"]
    assert set(grids) == {"unipc:3", "unipc:4", "unipc:5"} and len(grids["unipc:3"]["encode"]) == 4
    assert config["default_steps"] == {"unipc": 3}
    src = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=3)
    args = ["translate", str(src), "--from", "reds", "--to", "blues", "--models-dir", str(models)]
    r = run_cli(*args)  # reds' default (3) over blues' (none: 20 would be the fallback); the largest wins
    assert r.returncode == 0 and "unipc × 20 steps" in r.stdout, r.stderr
    shutil.copy(models / "reds" / "config.json", tmp_path / "reds-config.json")
    blues = json.loads((models / "blues" / "config.json").read_text())
    (models / "blues" / "config.json").write_text(json.dumps({**blues, "default_steps": {"unipc": 2}}))
    r = run_cli(*args, "--out-dir", str(tmp_path / "d"))
    assert r.returncode == 0 and "unipc × 3 steps, tuned grid" in r.stdout, r.stderr  # max(3, 2); reds' grid
    args += ["--steps", "3"]
    r = run_cli(*args, "--rho", "inf", "--out-dir", str(tmp_path / "o"))
    assert r.returncode == 0 and "tuned grid" not in r.stdout, r.stderr  # an explicit grid shape wins
    (models / "blues" / "config.json").write_text(json.dumps({**blues, "default_steps": {"unipc": 0}}))
    r = run_cli(*args, "--out-dir", str(tmp_path / "e"))
    assert r.returncode != 0 and "default_steps must map solvers to positive step counts" in r.stderr
    (models / "blues" / "config.json").write_text(json.dumps(blues))
    r = run_cli("bench", "translate", "--from", "reds", "--to", "blues", "--inputs", str(images), "-n", "2",
                "--solvers", "unipc", "--steps-list", "3,5,6", "--grids", "both", "--no-cycle", "--reference",
                "unipc:24", "--models-dir", str(models), "--out-dir", str(tmp_path / "bench"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "bench" / "translate-cpu.csv") as f:
        rows = [(row["steps"], row["grid"].removesuffix(" + coefficients")) for row in csv.DictReader(f)]
    # No tuned grid for 6 steps: its default row is not repeated.
    assert rows == [("3", "log-SNR uniform"), ("3", "tuned"), ("5", "log-SNR uniform"), ("5", "tuned"),
                    ("6", "log-SNR uniform")]  # fmt: skip
    bridge = ["tune-solver", "--from", "reds", "--to", "blues", "--steps", "2", "-n", "4", "--val", "4", "--method",
              "search", "--budget", "3", "--reference", "unipc:24", "--inputs", str(images), "--models-dir",
              str(models)]  # fmt: skip
    r = run_cli(*bridge)
    assert r.returncode == 0 and "for the bridge reds → blues" in r.stdout, r.stderr
    reds, blues = (json.loads((models / d / "config.json").read_text())["solver_grids"]["unipc:2"] for d in
                   ("reds", "blues"))  # fmt: skip
    assert set(reds["errors"]) == {"encode"} and set(blues["errors"]) == {"decode"}  # each end tunes its own part
    assert reds["errors"]["encode"]["bridge"] == blues["errors"]["decode"]["bridge"] == "reds → blues"
    assert "after the target's converged decode" in reds["errors"]["encode"]["unit"]
    r = run_cli(*bridge, "--domain", "reds")
    assert r.returncode != 0 and "not both" in r.stderr
    r = run_cli("tune-solver", "--domain", "reds", "--solver", "dopri5", "--models-dir", str(models))
    assert r.returncode != 0 and "grids are for fixed-step solvers" in r.stderr
    r = run_cli("tune-solver", "--domain", "reds", "--direction", "sideways", "--models-dir", str(models))
    assert r.returncode != 0 and "--direction sideways" in r.stderr
    r = run_cli("tune-solver", "--domain", "fives", "--models-dir", str(tmp_path / "empty"))
    assert r.returncode != 0 and "fives is a bundled model" in r.stderr


def test_end_to_end_refinement_finds_the_exact_corrections_from_none():
    # The end state is exact for some corrections (see the node-wise fit above); Levenberg–Marquardt from zero
    # corrections, seeing only the end state, must find a solve as good.
    model = gaussian_model(MEAN, STD)
    g = torch.Generator().manual_seed(7)
    x = MEAN + STD * torch.randn(64, 2, dtype=torch.float64, generator=g)
    exact_z = _exact_latents(model, x)
    grid = sigma_grid(model, 4, math.inf)
    zeros = [[0.0] * len(c) for c in fit_corrections(model, x[:32] / model.schedule.alpha_ends[0], grid)]
    refined = refine_corrections(lambda c: encode_on(model, x[:32], UNIPC, grid, corrections=c), exact_z[:32], zeros)
    plain = rms(encode_on(model, x[32:], UNIPC, grid), exact_z[32:])
    assert rms(encode_on(model, x[32:], UNIPC, grid, corrections=refined), exact_z[32:]) < plain / 100
    assert [len(c) for c in refined] == [len(c) for c in zeros]


def test_bundled_pair_learned_solves_carry_each_bridges_part():
    # Each end of a bridge must carry the part fitted for that bridge: fives encode with the fives → sevens fit
    # and decode with the sevens → fives one (and the other way round for sevens). Both bridges are fitted at 8–20
    # steps; at 6 only fives → sevens is (fives encode, sevens decode).
    for domain, other in (("fives", "sevens"), ("sevens", "fives")):
        model = load_domain_model(str(BUNDLED_DIR / domain), None, "cpu").diffusion
        assert {int(k.split(":")[1]) for k in model.solver_grids} == {6, 8, 10, 12, 14, 16, 18, 20}
        for key, entry in model.solver_grids.items():
            count = int(key.split(":")[1])
            for direction, bridge in (("encode", f"{domain} → {other}"), ("decode", f"{other} → {domain}")):
                if count < 8 and bridge != "fives → sevens":
                    assert tuned_grid(model, "unipc", count, direction) is None
                    continue
                grid = tuned_grid(model, "unipc", count, direction)
                assert grid is not None and len(grid) == count + 1 and bool((grid.diff() > 0).all())
                assert len(tuned_corrections(model, "unipc", count, direction)) == count
                assert stored(model, "unipc", count).direction(direction).errors.bridge == bridge
            assert TunedSolve.from_json(entry).to_json() == entry  # the stored format, read and written back
        presets = model.quality_presets["unipc"]
        assert presets["default"] == {"steps": 12, "tuned": False} and presets["exact"]["steps"] == 100
        assert ode.resolve_steps(ode.ODEOptions(), model).steps == 12


def test_a_tuned_solve_is_read_as_it_is_written():
    part = TunedDirection.of([0.1, 1.0, 10.0], [[], [0.5]], TuningErrors("tuned", 2.0, 1.0, 2.5, 1.5, "ref", "unit",
                                                                        evaluations=7))  # fmt: skip
    entry = TunedSolve(encode=part, reference="ref", images=ImageCounts(4, 4, 4))
    raw = entry.to_json()
    assert list(raw) == ["encode", "encode_corrections", "reference", "images", "errors"]
    assert list(raw["errors"]["encode"]) == ["kept", "tune_default", "tune_tuned", "val_default", "val_tuned",
                                             "evaluations", "reference", "unit"]  # fmt: skip
    assert TunedSolve.from_json(json.loads(json.dumps(raw))) == entry
    assert TunedSolve.from_json({"decode": [0.1, 10.0]}).to_json() == {"decode": [0.1, 10.0]}  # nodes alone solve
    with pytest.raises(ValueError):
        TunedSolve.from_json({"encode_corrections": [[]]})
