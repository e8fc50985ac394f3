"""What a run does when things go wrong: unreadable inputs, a second trainer, Ctrl-C, a failing disk."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from ddib.errors import DDIBError
from ddib.io.atomic import atomic_write
from ddib.io.images import read_images
from ddib.model import checkpoint as ckpt
from ddib.train.log import LOG_FILE, read_log

from .conftest import REPO, make_blob_images, run_cli
from .test_cli import _one_line_error

TINY = ["--model-size", "tiny", "--image-size", "16", "--batch-size", "8", "--lr", "2e-3", "--sample-every", "0"]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _default_sigint() -> None:
    # A suite started in the background (nohup, `make test &`) passes SIGINT on as ignored, and Python then
    # installs no Ctrl-C handler; the child gets the terminal's default, as a user's command would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(*args: str, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ddib", *args], env=_env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)  # fmt: skip


def _wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if line.startswith(prefix):
            return
        assert time.monotonic() < deadline, f"no line starting {prefix!r}"
    raise AssertionError(f"process ended before {prefix!r}: {proc.stderr.read()}")


def _with_bad_files(folder, n_bad: int):
    make_blob_images(folder, 3, (230, 30, 30), seed=3)
    good = (folder / "img000.png").read_bytes()
    for i in range(n_bad):
        if i % 2:
            (folder / f"bad{i:02d}.png").write_bytes(b"not an image at all")
        else:
            (folder / f"bad{i:02d}.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    return folder


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- unreadable inputs --------------------------------------------------------------------------------------------


def test_read_images_reports_every_bad_file_and_shortens_long_lists(tmp_path):
    folder = _with_bad_files(tmp_path / "in", 13)
    files = sorted(folder.iterdir())
    with pytest.raises(DDIBError) as info:
        read_images(files, 16, 3)
    message = str(info.value)
    assert message.startswith("13 of 16 images cannot be read: ") and "\n" not in message
    assert "bad00.png (truncated)" in message and "bad01.png (not a recognised image format)" in message
    assert "bad09.png" in message and "bad10.png" not in message and ", and 3 more" in message
    kept = read_images(files, 16, 3, skip_bad=True)
    assert [p.name for p in kept.files] == ["img000.png", "img001.png", "img002.png"]
    assert kept.pixels.shape == (3, 3, 16, 16) and len(kept.skipped) == 13


def test_translate_checks_every_input_before_writing_anything(tmp_path, tiny_models):
    folder = _with_bad_files(tmp_path / "in", 2)
    args = ["translate", str(folder), "--from", "reds", "--to", "blues", "--models-dir", str(tiny_models),
            "--steps", "3", "--batch-size", "1"]  # fmt: skip
    r = run_cli(*args)
    _one_line_error(r, "2 of 5 images cannot be read", "bad00.png (truncated)", "bad01.png", "--skip-bad")
    assert not (tmp_path / "in-to-blues").exists()  # the good inputs sort first: nothing was written anyway
    r = run_cli(*args, "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "in-to-blues").iterdir()) == ["img000.png", "img001.png", "img002.png"]
    assert "translated 3 images" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("skipped 2 unreadable image(s)")


@pytest.mark.parametrize("command", ["likelihood", "classify", "perturb", "evaluate", "train"])
def test_every_folder_reader_refuses_or_skips_unreadable_files(tmp_path, tiny_models, command):
    folder = _with_bad_files(tmp_path / "in", 2)
    models = ["--models-dir", str(tiny_models)]
    args = {
        "likelihood": ["likelihood", str(folder), "--domain", "reds", "--method", "elbo", "--levels", "2", *models],
        "classify": ["classify", str(folder), "--domain", "reds", "--domain", "blues", "--method", "elbo", "--levels",
                     "2", *models],
        "perturb": ["perturb", str(folder), "--from", "reds", "--to", "blues", "--op", "blur", "--coef", "0.5",
                    "--steps", "2", "--out", str(tmp_path / "p.png"), *models],
        "evaluate": ["evaluate", "--from", "reds", "--to", "blues", "--inputs", str(folder), "--steps", "2",
                     "--no-cycle", *models],
        "train": ["train", "--domain", "mixed", "--data", str(folder), "--steps", "1", *TINY,
                  "--models-dir", str(tmp_path / "m")],
    }[command]  # fmt: skip
    r = run_cli(*args)
    _one_line_error(r, "2 of 5 images cannot be read", "bad00.png", "bad01.png")
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "m").exists()
    r = run_cli(*args, "--skip-bad")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("skipped 2 unreadable image(s)")


# --- one trainer per run directory ---------------------------------------------------------------------------------


def test_a_second_trainer_exits_at_once_and_a_killed_one_leaves_no_lock(tmp_path):
    data = make_blob_images(tmp_path / "reds", 16, (230, 30, 30), seed=1)
    args = ["train", "--domain", "reds", "--data", str(data), "--models-dir", str(tmp_path / "m"), *TINY,
            "--log-every", "1", "--save-every", "2"]  # fmt: skip
    first = _popen(*args, "--steps", "100000")
    try:
        _wait_for_line(first, "step 3/")
        started = time.monotonic()
        second = run_cli(*args, "--steps", "100000")
        _one_line_error(second, "in use by another ddib train", f"pid {first.pid}")
        assert time.monotonic() - started < 60
    finally:
        first.kill()  # SIGKILL: no handler runs, the kernel drops the lock
        first.wait()
    reached = ckpt.load_train_state(tmp_path / "m" / "reds")["step"]
    third = run_cli(*args, "--steps", str(reached + 2))
    assert third.returncode == 0, third.stderr
    assert f"resuming at step {reached}/" in third.stdout
    assert ckpt.load_train_state(tmp_path / "m" / "reds")["step"] == reached + 2


# --- interrupts and failing writes ---------------------------------------------------------------------------------


def test_ctrl_c_saves_at_a_step_boundary_and_the_run_resumes_bit_identically(tmp_path):
    data = make_blob_images(tmp_path / "reds", 16, (230, 30, 30), seed=1)
    common = ["train", "--domain", "reds", "--data", str(data), *TINY, "--log-every", "1", "--save-every", "1000"]
    run = _popen(*common, "--models-dir", str(tmp_path / "cut"), "--steps", "100000")
    _wait_for_line(run, "step 3/")
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert err.strip().splitlines() == [err.strip()] and err.startswith("interrupted at step "), err
    cut = ckpt.load_train_state(tmp_path / "cut" / "reds")["step"]
    assert f"interrupted at step {cut};" in err and cut >= 3
    assert not list((tmp_path / "cut" / "reds").glob(".*.tmp"))
    total = cut + 3
    # The same settings (--steps is not a setting), resumed, against one uninterrupted run.
    r = run_cli(*common, "--models-dir", str(tmp_path / "cut"), "--steps", str(total))
    assert r.returncode == 0 and f"resuming at step {cut}/{total}" in r.stdout, r.stderr
    r = run_cli(*common, "--models-dir", str(tmp_path / "once"), "--steps", str(total))
    assert r.returncode == 0, r.stderr
    a, b = (ckpt.load_train_state(tmp_path / d / "reds") for d in ("cut", "once"))
    assert _state_equal(a["net"], b["net"]) and _state_equal(a["ema"], b["ema"])
    losses = [[rec["loss"] for rec in read_log(tmp_path / d / "reds" / LOG_FILE)] for d in ("cut", "once")]
    assert losses[0] == losses[1] and len(losses[0]) == total


@pytest.mark.parametrize("command", ["translate", "perturb", "evaluate", "bench"])
def test_ctrl_c_is_one_line_with_status_130_and_no_partial_file(tmp_path, tiny_models, command):
    folder = make_blob_images(tmp_path / "in", 40, (230, 30, 30), seed=5)
    out = tmp_path / "out"
    models = ["--models-dir", str(tiny_models)]
    slow = ["--steps", "400"]
    # Each command, and the sign that it is inside its solves: a line it prints, or its first output.
    args, started = {
        "translate": (["translate", str(folder), "--from", "reds", "--to", "blues", "--batch-size", "1",
                       "--out-dir", str(out / "t"), "--grid", str(out / "grid.png"), *slow, *models],
                      lambda lines: (out / "t").exists() and any((out / "t").iterdir())),
        "perturb": (["perturb", str(folder), "--from", "reds", "--to", "blues", "--op", "blur", "--coef", "0.1,0.5",
                     "--batch-size", "1", "--out", str(out / "p.png"), *slow, *models],
                    lambda lines: any(line.startswith("inputs:") for line in lines)),
        "evaluate": (["evaluate", "--from", "reds", "--to", "blues", "--inputs", str(folder), "--batch-size", "1",
                      "--json", str(out / "e.json"), *slow, *models],
                     lambda lines: any("not a digit domain" in line for line in lines)),
        "bench": (["bench", "translate", "--from", "reds", "--to", "blues", "--inputs", str(folder), "-n", "40",
                   "--solvers", "unipc", "--reference", "unipc:400", "--out-dir", str(out), *models],
                  lambda lines: any(line.startswith("reference:") for line in lines)),
    }[command]  # fmt: skip
    out.mkdir()
    proc = _popen(*args, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not started(lines):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    # Whole outputs only: translate writes one image per finished batch, no run writes its summary file.
    assert all(p.startswith("t/img") for p in written), written
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failing_write_names_the_path_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text("previous")

    def full_disk(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DDIBError, match=f"cannot write {path}: No space left on device"):
        atomic_write(path, full_disk)
    assert path.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_checkpoint_write_that_fails_leaves_the_last_checkpoint_loadable(tmp_path):
    resource = pytest.importorskip("resource")  # POSIX: RLIMIT_FSIZE

    data = make_blob_images(tmp_path / "reds", 16, (230, 30, 30), seed=1)
    args = ["train", "--domain", "reds", "--data", str(data), "--models-dir", str(tmp_path / "m"), *TINY]
    assert run_cli(*args, "--steps", "2").returncode == 0
    before = (tmp_path / "m" / "reds" / ckpt.STATE_FILE).read_bytes()

    def small_files():  # the kernel refuses any write past 64 KiB: a disk that fills up mid-checkpoint
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run([sys.executable, "-m", "ddib", *args, "--steps", "4"], env=_env(), capture_output=True,
                       text=True, timeout=300, preexec_fn=small_files)  # fmt: skip
    _one_line_error(r, "cannot write", str(tmp_path / "m" / "reds" / ckpt.STATE_FILE), "File too large")
    assert (tmp_path / "m" / "reds" / ckpt.STATE_FILE).read_bytes() == before
    assert ckpt.load_train_state(tmp_path / "m" / "reds")["step"] == 2
    assert not list((tmp_path / "m" / "reds").glob(".*.tmp"))


# --- the training log ----------------------------------------------------------------------------------------------


def test_training_log_continues_across_resumes_and_plots(tmp_path):
    data = make_blob_images(tmp_path / "reds", 16, (230, 30, 30), seed=1)
    run = tmp_path / "m" / "reds"
    args = ["train", "--domain", "reds", "--data", str(data), "--models-dir", str(tmp_path / "m"), *TINY,
            "--log-every", "2", "--save-every", "4"]  # fmt: skip
    assert run_cli(*args, "--steps", "4").returncode == 0
    records = read_log(run / LOG_FILE)
    assert [r["step"] for r in records] == [2, 4]
    assert set(records[0]) == {"step", "loss", "loss_ema", "lr", "images_per_s", "elapsed"}
    # A process killed after step 6 but before the step-8 checkpoint left lines (and a torn one) past step 4.
    with open(run / LOG_FILE, "a") as f:
        f.write(json.dumps({**records[-1], "step": 6}) + "\n" + '{"step": 8, "lo')
    r = run_cli(*args, "--steps", "8")
    assert r.returncode == 0, r.stderr
    records = read_log(run / LOG_FILE)
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert records[2]["loss"] != records[1]["loss"]  # step 6 was trained again, not kept from the dead process
    elapsed = [r["elapsed"] for r in records]
    assert elapsed == sorted(elapsed)  # training time accumulates over the two processes
    r = run_cli("plot-loss", str(run))
    assert r.returncode == 0 and (run / "loss.png").stat().st_size > 1000, r.stderr
    _one_line_error(run_cli("plot-loss", str(tmp_path)), "no train_log.jsonl")
    _one_line_error(run_cli("plot-loss", str(run), "--out", str(tmp_path / "x.jpg")), "must be a .png")
