"""Quality presets: stored per model, combined over a bridge, resolved by `--quality`, named in summaries."""

import dataclasses
import json

import pytest
import torch

from ddib.bridge import ode, presets
from ddib.bridge.grids import sigma_grid
from ddib.errors import DDIBError
from ddib.model import registry

from .conftest import REPO
from .problems import gaussian_model

FAST, DEFAULT, EXACT = {"steps": 6, "tuned": False}, {"steps": 12, "tuned": True}, {"steps": 30, "tuned": False}


def _model(quality=None, default_steps=None, tuned_steps=()):
    model = gaussian_model(torch.zeros(1, 4, 4, dtype=torch.float64), 0.5)
    model.quality_presets = {"unipc": quality} if quality is not None else {}
    model.default_steps = {"unipc": default_steps} if default_steps else {}
    for steps in tuned_steps:  # a tuned entry: the solver's own nodes, which is enough to be "on a tuned grid"
        grid = sigma_grid(model, steps, ode.ODEOptions().rho).tolist()
        model.solver_grids[model.grid_key("unipc", steps)] = {"encode": grid, "decode": grid}
    return model


def test_each_preset_resolves_to_its_steps_and_grid():
    model = _model({"fast": FAST, "default": DEFAULT, "exact": EXACT}, tuned_steps=(6, 12))
    fast = ode.resolve_steps(ode.ODEOptions(quality="fast"), model)
    assert (fast.steps, fast.tuned) == (6, False)  # untuned although the model holds a tuned 6-step grid
    assert not ode.uses_tuned_grid(fast, model)
    default = ode.resolve_steps(ode.ODEOptions(), model)
    assert (default.steps, default.tuned) == (12, True) and ode.uses_tuned_grid(default, model)
    assert ode.resolve_steps(ode.ODEOptions(quality="exact"), model).steps == 30


def test_steps_and_rho_override_a_preset():
    model = _model({"fast": FAST, "default": DEFAULT}, tuned_steps=(12,))
    assert ode.resolve_steps(ode.ODEOptions(steps=9, quality="fast"), model).steps == 9
    on_rho = ode.resolve_steps(ode.ODEOptions(rho=7.0, tuned=False), model)  # what --rho 7 asks for
    assert (on_rho.steps, ode.uses_tuned_grid(on_rho, model)) == (12, False)


def test_the_default_preset_wins_over_the_default_step_count_and_falls_back_to_it():
    assert ode.resolve_steps(ode.ODEOptions(), _model({"default": DEFAULT}, default_steps=18)).steps == 12
    assert ode.resolve_steps(ode.ODEOptions(), _model(default_steps=18)).steps == 18
    assert ode.resolve_steps(ode.ODEOptions(), _model()).steps == ode.DEFAULT_STEPS


def test_a_bridge_takes_the_larger_step_count_on_tuned_grids_only_where_both_ends_are():
    a = _model({"fast": {"steps": 8, "tuned": True}, "default": DEFAULT})
    b = _model({"fast": {"steps": 10, "tuned": False}, "default": {"steps": 12, "tuned": False}})
    assert dataclasses.astuple(presets.bridge_preset("fast", "unipc", [a, b], lambda m: 20)) == (10, False)
    assert dataclasses.astuple(presets.bridge_preset("default", "unipc", [a, b], lambda m: 20)) == (12, False)
    # A model without a stored default counts with its own default step count on its tuned grid.
    assert dataclasses.astuple(presets.bridge_preset("default", "unipc", [a, _model()], lambda m: 14)) == (14, True)
    assert presets.bridge_preset("default", "unipc", [_model(), _model()], lambda m: 14) is None


def test_a_preset_the_models_do_not_store_is_a_clear_error():
    for models in ([_model()], [_model({"fast": FAST}), _model()], [_model({"default": DEFAULT})]):
        with pytest.raises(DDIBError, match=r"no fast preset for unipc; .*ddib bench quality .*--save-presets"):
            ode.resolve_steps(ode.ODEOptions(quality="fast"), *models)
    with pytest.raises(DDIBError, match="is malformed"):
        ode.resolve_steps(ode.ODEOptions(quality="fast"), _model({"fast": {"steps": "ten", "tuned": False}}))
    with pytest.raises(DDIBError, match="choose one of fast, default, exact"):
        ode.ODEOptions(quality="fastest")
    with pytest.raises(DDIBError, match="--quality is for fixed-step solvers"):
        ode.ODEOptions("dopri5", quality="exact")


def test_the_summary_names_the_preset_a_solve_follows():
    model = _model({"fast": FAST, "default": DEFAULT, "exact": EXACT}, tuned_steps=(12,))
    assert ode.describe_solve(ode.ODEOptions(quality="fast"), model) == "unipc × 6 steps (fast preset)"
    assert ode.describe_solve(ode.ODEOptions(), model) == "unipc × 12 steps, tuned grid (default preset)"
    resolved = ode.resolve_steps(ode.ODEOptions(quality="exact"), model)  # commands resolve first, then describe
    assert ode.describe_solve(resolved, model) == "unipc × 30 steps (exact preset)"
    assert ode.describe_solve(ode.ODEOptions(steps=7, quality="fast"), model) == "unipc × 7 steps"
    assert "preset" not in ode.describe_solve(ode.ODEOptions(rho=7.0, tuned=False), model)  # another grid
    assert ode.describe_solve(ode.ODEOptions(), _model(default_steps=18)) == "unipc × 18 steps"  # none stored


def test_a_solve_at_a_preset_translates_as_its_steps_and_grid_do():
    src, tgt = _model({"fast": FAST}), _model({"fast": FAST})
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    by_preset = ode.translate(src, tgt, x, ode.ODEOptions(quality="fast"))
    assert torch.equal(by_preset, ode.translate(src, tgt, x, ode.ODEOptions(steps=6, tuned=False)))
    assert not torch.equal(by_preset, ode.translate(src, tgt, x, ode.ODEOptions(steps=7, tuned=False)))


@pytest.mark.parametrize("pair", [("fives", "sevens"), ("fives-rgb", "sevens-rgb")])
def test_each_bundled_pair_stores_the_presets_its_quality_table_chose(pair):
    stored = []
    for name in pair:
        model = registry.load_domain_model(name, models_dir="/nonexistent").diffusion
        quality = model.quality_presets["unipc"]
        table = json.loads((REPO / quality["table"]).with_suffix(".json").read_text())
        assert table["setting"]["source"] == pair[0] and table["setting"]["target"] == pair[1]
        assert {k: quality[k] for k in ("fast", "default", "exact")} == table["presets"]
        assert quality["images"] == table["setting"]["images"] == 892  # all held-out fives
        stored.append(table["presets"])
        assert ode.resolve_steps(ode.ODEOptions(), model).steps == table["presets"]["default"]["steps"]
    assert stored[0] == stored[1]
