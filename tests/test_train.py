import math

import pytest
import safetensors.torch
import torch

from ddib.errors import DDIBError
from ddib.model import checkpoint as ckpt
from ddib.model.diffusion import DiffusionConfig
from ddib.model.nets import unet_config
from ddib.train.loop import DataStream, TrainingDiverged, TrainOptions, lr_at, train


def _data(n=32, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    pos = torch.randint(2, size - 6, (n, 2), generator=g)
    for i, (a, b) in enumerate(pos.tolist()):
        x[i, i % 3, a : a + 4, b : b + 4] = 255
    return x


def _cfg(lr=2e-3, batch=8, seed=0, cooldown=0):
    return ckpt.RunConfig(
        model=unet_config("tiny", image_size=16),
        diffusion=DiffusionConfig(),
        train=ckpt.TrainConfig(batch_size=batch, lr=lr, warmup_steps=5, cooldown_steps=cooldown, seed=seed),
        domain={"name": "blocks", "kind": "folder", "digit": None, "path": "memory"},
    )


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_decreases_on_tiny_dataset(tmp_path):
    data = _data()
    losses = []
    train(
        tmp_path / "run",
        _cfg(),
        data,
        TrainOptions(steps=80, save_every=1000),
        lambda p: losses.append(p.loss),
    )
    losses = [v for v in losses if not math.isnan(v)]
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10


def test_resume_equals_uninterrupted(tmp_path):
    data = _data()
    train(tmp_path / "once", _cfg(), data, TrainOptions(steps=20, save_every=100))
    train(tmp_path / "twice", _cfg(), data, TrainOptions(steps=10, save_every=100))
    train(tmp_path / "twice", _cfg(), data, TrainOptions(steps=20, save_every=100))
    a = ckpt.load_train_state(tmp_path / "once")
    b = ckpt.load_train_state(tmp_path / "twice")
    assert a["step"] == b["step"] == 20
    assert _state_equal(a["net"], b["net"]) and _state_equal(a["ema"], b["ema"])
    wa = safetensors.torch.load_file(str(tmp_path / "once" / ckpt.WEIGHTS_FILE))
    wb = safetensors.torch.load_file(str(tmp_path / "twice" / ckpt.WEIGHTS_FILE))
    assert _state_equal(wa, wb)


def test_checkpoint_round_trip_is_bitwise(tmp_path):
    model = train(tmp_path / "run", _cfg(), _data(), TrainOptions(steps=5, save_every=100))
    loaded, cfg, meta = ckpt.load_model(tmp_path / "run")
    x, t = torch.randn(3, 3, 16, 16), torch.rand(3)
    assert torch.equal(model.eps(x, t), loaded.eps(x, t))
    assert cfg == _cfg() and meta["step"] == "5"


def test_resume_with_other_settings_is_refused(tmp_path):
    train(tmp_path / "run", _cfg(), _data(), TrainOptions(steps=2, save_every=100))
    with pytest.raises(DDIBError, match="other settings"):
        train(tmp_path / "run", _cfg(lr=1e-3), _data(), TrainOptions(steps=4, save_every=100))


def test_lr_schedule_warms_up_holds_and_cools_down_to_zero():
    cfg = ckpt.TrainConfig(lr=1.0, warmup_steps=10, cooldown_steps=20)
    lrs = [lr_at(s, cfg, total_steps=100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == lrs[50] == lrs[80] == 1.0
    assert lrs[90] == pytest.approx(0.5) and lrs[99] == pytest.approx(1 / 20)
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))
    assert lr_at(50, ckpt.TrainConfig(lr=1.0, warmup_steps=10), total_steps=100) == 1.0  # no cooldown: constant


def test_cooldown_can_start_when_resuming_and_is_recorded(tmp_path):
    run = tmp_path / "run"
    train(run, _cfg(), _data(), TrainOptions(steps=10, save_every=100))
    train(run, _cfg(cooldown=10), _data(), TrainOptions(steps=20, save_every=100))  # a stable run, cooled down
    state = ckpt.load_train_state(run)
    assert state["step"] == 20 and state["config"]["train"]["cooldown_steps"] == 10
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3 / 10)  # the last step's lr


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(run, _cfg(), _data(), TrainOptions(steps=3, save_every=100))
    before = {f: (run / f).read_bytes() for f in (ckpt.STATE_FILE, ckpt.WEIGHTS_FILE, ckpt.CONFIG_FILE)}

    import os

    real_fsync = os.fsync
    calls = {"n": 0}

    def dying_fsync(fd):  # the "power cut": the write of the second file dies before it is renamed
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-save")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", dying_fsync)
    with pytest.raises(KeyboardInterrupt):
        train(run, _cfg(), _data(), TrainOptions(steps=6, save_every=100))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (run / ckpt.WEIGHTS_FILE).read_bytes() == before[ckpt.WEIGHTS_FILE]
    assert (run / ckpt.CONFIG_FILE).read_bytes() == before[ckpt.CONFIG_FILE]
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind
    ckpt.load_model(run)  # still loadable
    assert ckpt.load_train_state(run)["step"] in (3, 6)


def test_truncated_and_incompatible_checkpoints_are_clear_errors(tmp_path):
    run = tmp_path / "run"
    train(run, _cfg(), _data(), TrainOptions(steps=1, save_every=100))
    weights = (run / ckpt.WEIGHTS_FILE).read_bytes()
    (run / ckpt.WEIGHTS_FILE).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(DDIBError, match="corrupt or truncated"):
        ckpt.load_model(run)
    (run / ckpt.WEIGHTS_FILE).write_bytes(weights)
    text = (run / ckpt.CONFIG_FILE).read_text().replace('"base_channels": 16', '"base_channels": 32')
    (run / ckpt.CONFIG_FILE).write_text(text)
    with pytest.raises(DDIBError, match="does not match"):
        ckpt.load_model(run)
    (run / ckpt.STATE_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DDIBError, match="corrupt"):
        ckpt.load_train_state(run)


def test_nan_loss_stops_with_a_message(tmp_path):
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf)"):
        train(tmp_path / "run", _cfg(lr=1e30), _data(), TrainOptions(steps=50, save_every=1))
    ckpt.load_model(tmp_path / "run")  # the checkpoints written before the divergence are intact


def test_data_stream_covers_each_epoch_once():
    s = DataStream(10, 4, seed=3)
    idx = torch.cat([s.indices(k) for k in range(5)])  # 20 indices = 2 epochs
    assert sorted(idx[:10].tolist()) == list(range(10)) and sorted(idx[10:].tolist()) == list(range(10))
    assert not torch.equal(idx[:10], idx[10:])
    assert torch.equal(DataStream(10, 4, seed=3).indices(3), s.indices(3))


def test_channels_last_training_matches_the_default_layout(tmp_path):
    a = train(tmp_path / "nchw", _cfg(), _data(), TrainOptions(steps=5, save_every=100))
    b = train(tmp_path / "nhwc", _cfg(), _data(), TrainOptions(steps=5, save_every=100, channels_last=True))
    for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-5), name  # same training, another memory layout
    saved, _, _ = ckpt.load_model(tmp_path / "nhwc")  # weights are saved contiguous, loadable as usual
    assert all(v.is_contiguous() for v in saved.net.state_dict().values())
