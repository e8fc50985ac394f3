"""The resumable training state: safetensors + JSON, no pickle, crash-safe, legacy train_state.pt migrated."""

import json
import os

import pytest
import safetensors.torch
import torch

from ddib.errors import DDIBError
from ddib.model import checkpoint as ckpt
from ddib.model import train_state
from ddib.train.loop import TrainOptions, train

from .test_train import _cfg, _data, _state_equal


def _same_state(a: dict, b: dict) -> bool:
    """Weights, EMA, every optimizer entry and the RNG state equal, bit for bit."""
    if a["step"] != b["step"] or not (_state_equal(a["net"], b["net"]) and _state_equal(a["ema"], b["ema"])):
        return False
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    if sa.keys() != sb.keys() or not all(_state_equal(sa[i], sb[i]) for i in sa):
        return False
    return torch.equal(a["rng_cpu"], b["rng_cpu"])


def test_the_state_is_safetensors_and_json_and_round_trips(tmp_path):
    run = tmp_path / "run"
    train(run, _cfg(), _data(), TrainOptions(steps=4, save_every=100))
    assert not (run / train_state.LEGACY_FILE).exists() and not (run / train_state.PREVIOUS_FILE).exists()
    record = json.loads((run / ckpt.STATE_JSON).read_text())
    assert record["step"] == 4 and record["config"]["train"]["lr"] == 2e-3
    assert record["optimizer"]["scalars"]["0"]["step"] == {"value": 4.0, "dtype": "float32"}  # Adam's step
    tensors = safetensors.torch.load_file(str(run / ckpt.STATE_FILE))
    assert {k.split(".")[0] for k in tensors} == {"net", "ema", "optimizer", "rng"}
    assert tensors["rng.cpu"].dtype == torch.uint8 and "optimizer.0.exp_avg_sq" in tensors
    state = ckpt.load_train_state(run)
    ckpt.save_train_state(tmp_path / "copy", state)
    again = ckpt.load_train_state(tmp_path / "copy")
    assert _same_state(state, again) and again["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    step = again["optimizer"]["state"][0]["step"]
    assert isinstance(step, torch.Tensor) and step.dtype == torch.float32 and step.item() == 4


def test_a_save_killed_at_any_point_leaves_the_old_or_the_new_state(tmp_path, monkeypatch):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    train(old_dir, _cfg(), _data(), TrainOptions(steps=3, save_every=100))
    train(new_dir, _cfg(), _data(), TrainOptions(steps=6, save_every=100))
    old, new = ckpt.load_train_state(old_dir), ckpt.load_train_state(new_dir)
    real = {name: getattr(os, name) for name in ("fsync", "replace", "unlink")}
    cut = 0
    while True:  # the power goes at each file operation of the save in turn (fsync, rename, unlink)
        cut += 1
        run = tmp_path / f"cut{cut}"
        ckpt.save_train_state(run, old)
        calls = {"n": 0}

        def dying(name, *args, cut=cut, calls=calls):
            calls["n"] += 1
            if calls["n"] == cut:
                raise KeyboardInterrupt("killed mid-save")
            return real[name](*args)

        for name in real:
            monkeypatch.setattr(os, name, lambda *args, name=name: dying(name, *args))
        try:
            ckpt.save_train_state(run, new)
            finished = True
        except KeyboardInterrupt:
            finished = False
        for name, fn in real.items():
            monkeypatch.setattr(os, name, fn)
        got = ckpt.load_train_state(run)
        assert _same_state(got, new) or (not finished and _same_state(got, old)), cut
        if finished:
            break
        ckpt.save_train_state(run, new)  # the next save after a cut one is whole again
        assert _same_state(ckpt.load_train_state(run), new) and not (run / train_state.PREVIOUS_FILE).exists()
    assert cut > 6  # the save did that many file operations, each one cut once


def test_tensors_that_do_not_belong_to_the_json_are_a_one_line_error(tmp_path):
    for steps in (2, 3):
        train(tmp_path / f"s{steps}", _cfg(), _data(), TrainOptions(steps=steps, save_every=100))
    (tmp_path / "s2" / ckpt.STATE_FILE).write_bytes((tmp_path / "s3" / ckpt.STATE_FILE).read_bytes())
    with pytest.raises(DDIBError, match="not the one train_state.json names") as info:
        ckpt.load_train_state(tmp_path / "s2")
    assert "\n" not in str(info.value)
    (tmp_path / "s3" / ckpt.STATE_JSON).write_text('{"format": "ddib-train-state", "version": 99}')
    with pytest.raises(DDIBError, match="version 99"):
        ckpt.load_train_state(tmp_path / "s3")


def test_a_legacy_train_state_pt_resumes_exactly_and_is_replaced(tmp_path):
    data = _data()
    train(tmp_path / "once", _cfg(), data, TrainOptions(steps=20, save_every=100))
    legacy = tmp_path / "legacy"
    train(legacy, _cfg(), data, TrainOptions(steps=10, save_every=100))
    torch.save(ckpt.load_train_state(legacy), legacy / train_state.LEGACY_FILE)  # what older ddib wrote
    (legacy / ckpt.STATE_FILE).unlink()
    (legacy / ckpt.STATE_JSON).unlink()
    (legacy / ckpt.WEIGHTS_FILE).unlink()
    assert ckpt.is_weightless_run(legacy) and ckpt.load_model_from_state(legacy)[2]["step"] == "10"
    train(legacy, _cfg(), data, TrainOptions(steps=20, save_every=100))
    assert not (legacy / train_state.LEGACY_FILE).exists() and (legacy / ckpt.STATE_JSON).exists()
    assert _same_state(ckpt.load_train_state(legacy), ckpt.load_train_state(tmp_path / "once"))
