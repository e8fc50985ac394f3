"""The command line end to end, in subprocesses, with tiny models on CPU."""

import json

import pytest
import torch
from PIL import Image

from .conftest import make_blob_images, run_cli


def _one_line_error(r, *fragments):
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in r.stderr and len(err.splitlines()) == 1, r.stderr
    for f in fragments:
        assert f in err, err


def test_train_sample_models_end_to_end(tmp_path, tiny_models):
    cfg = json.loads((tiny_models / "reds" / "config.json").read_text())
    assert cfg["trained_steps"] == 30 and cfg["domain"]["kind"] == "folder" and cfg["model"]["image_size"] == 16
    assert {"torch", "ddib"} <= set(cfg["versions"])
    assert {"train_state.safetensors", "train_state.json"} <= {p.name for p in (tiny_models / "reds").iterdir()}
    assert not (tiny_models / "reds" / "train_state.pt").exists()

    r = run_cli("models", "--models-dir", str(tiny_models))
    assert r.returncode == 0 and "reds" in r.stdout and "blues" in r.stdout and "local" in r.stdout

    out = tmp_path / "s.png"
    r = run_cli(
        "sample",
        "--domain",
        "reds",
        "-n",
        "6",
        "--out",
        str(out),
        "--models-dir",
        str(tiny_models),
        "--seed",
        "3",
    )
    assert r.returncode == 0, r.stderr
    assert "NFE" in r.stdout and Image.open(out).size[0] > 16
    again = tmp_path / "s2.png"
    run_cli(
        "sample",
        "--domain",
        "reds",
        "-n",
        "6",
        "--out",
        str(again),
        "--models-dir",
        str(tiny_models),
        "--seed",
        "3",
    )
    assert out.read_bytes() == again.read_bytes()  # deterministic given --seed

    r = run_cli(
        "sample",
        "--domain",
        "reds",
        "-n",
        "3",
        "--out-dir",
        str(tmp_path / "each"),
        "--models-dir",
        str(tiny_models),
    )
    assert r.returncode == 0 and len(list((tmp_path / "each").glob("*.png"))) == 3


def test_train_resumes_and_writes_samples(tmp_path):
    data = make_blob_images(tmp_path / "greens", 12, (20, 220, 20), seed=5)
    args = [
        "train",
        "--domain",
        "greens",
        "--data",
        str(data),
        "--models-dir",
        str(tmp_path / "m"),
        "--model-size",
        "tiny",
        "--image-size",
        "16",
        "--batch-size",
        "4",
        "--sample-every",
        "2",
        "--log-every",
        "1",
    ]
    r = run_cli(*args, "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert "step 2/2" in r.stdout and "img/s" in r.stdout  # plain log lines when stdout is not a terminal
    assert (tmp_path / "m" / "greens" / "samples" / "step-000002.png").exists()
    r = run_cli(*args, "--steps", "3")
    assert r.returncode == 0 and "resuming at step 2/3" in r.stdout
    r = run_cli(*args[:-6], "--model-size", "small", "--image-size", "16", "--steps", "4")
    _one_line_error(r, "other settings")


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "--domain", "fivez"], ["unknown domain", "zeros, ones"]),
        (["train", "--domain", "fives", "--steps", "0"], ["--steps"]),
        (["train", "--domain", "fives", "--model-size", "huge"], ["unknown model size"]),
        (["train", "--domain", "fives", "--lr", "-1"], ["--lr must be positive"]),
        (["train", "--domain", "cats", "--data", "/nonexistent/cats"], ["folder not found"]),
        (["sample", "--domain", "nothing-here"], ["no trained model", "nothing-here"]),
        (["sample", "--domain", "x", "--solver", "rk45"], ["unknown solver"]),
        (["train", "--domain", "fives", "--device", "cuda:0"], []),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, fragments):
    r = run_cli(*args, "--models-dir", str(tmp_path / "m"), cwd=tmp_path)
    if args[-1] == "cuda:0" and r.returncode == 0:
        pytest.skip("this machine has CUDA")
    _one_line_error(r, *fragments)


def test_missing_mnist_is_one_line(tmp_path):
    r = run_cli(
        "train",
        "--domain",
        "fives",
        "--data-dir",
        str(tmp_path / "empty"),
        "--models-dir",
        str(tmp_path / "m"),
        env={"no_proxy": "*", "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"},
    )
    _one_line_error(r, "MNIST is not in", "DDIB_DATA_DIR")


def test_unreadable_folder_and_unwritable_output(tmp_path, tiny_models):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"garbage")
    r = run_cli(
        "train",
        "--domain",
        "bad",
        "--data",
        str(bad),
        "--models-dir",
        str(tmp_path / "m"),
        "--image-size",
        "16",
    )
    _one_line_error(r, "1 of 1 images cannot be read", "x.png")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli(
        "sample",
        "--domain",
        "reds",
        "-n",
        "1",
        "--out",
        str(blocker / "s.png"),
        "--models-dir",
        str(tiny_models),
    )
    _one_line_error(r, "cannot write")


def test_corrupt_checkpoint_is_one_line(tmp_path, tiny_models):
    import shutil

    broken = tmp_path / "models"
    shutil.copytree(tiny_models / "reds", broken / "reds")
    w = broken / "reds" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    r = run_cli("sample", "--domain", "reds", "--models-dir", str(broken), "--out", str(tmp_path / "o.png"))
    _one_line_error(r, "corrupt or truncated")
    (broken / "reds" / "config.json").write_text("{")
    r = run_cli("sample", "--domain", "reds", "--models-dir", str(broken), "--out", str(tmp_path / "o.png"))
    _one_line_error(r, "not valid JSON")


def test_warm_start_from_a_model_of_the_same_domain(tmp_path, tiny_models):
    import safetensors.torch

    data = tiny_models.parent / "reds"  # the folder the fixture trained `reds` on: the same domain
    common = ["train", "--domain", "reds", "--data", str(data), "--model-size", "tiny", "--image-size", "16",
              "--batch-size", "8", "--lr", "1e-12", "--sample-every", "0"]  # fmt: skip
    models = tmp_path / "m"
    r = run_cli(*common, "--models-dir", str(models), "--steps", "1", "--prediction", "v",
                "--init-from", str(tiny_models / "reds"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "v-prediction, warm start from" in r.stdout
    cfg = json.loads((models / "reds" / "config.json").read_text())
    assert cfg["diffusion"]["prediction"] == "v" and cfg["init"]["path"] == str(tiny_models / "reds")
    assert cfg["init"]["prediction"] == "eps" and cfg["init"]["trained_steps"] == "30"
    start = safetensors.torch.load_file(str(tiny_models / "reds" / "model.safetensors"))
    after = safetensors.torch.load_file(str(models / "reds" / "model.safetensors"))
    assert all(torch.allclose(start[k], after[k], atol=1e-6) for k in start)  # lr ≈ 0: still the init weights

    r = run_cli(*common, "--models-dir", str(models), "--steps", "2")  # resumes as v, keeps the provenance
    assert r.returncode == 0, r.stderr
    cfg = json.loads((models / "reds" / "config.json").read_text())
    assert cfg["trained_steps"] == 2 and cfg["diffusion"]["prediction"] == "v" and cfg["init"]["trained_steps"] == "30"

    other = run_cli(*common, "--models-dir", str(tmp_path / "m2"), "--steps", "1",
                    "--init-from", str(tiny_models / "blues"))  # fmt: skip
    _one_line_error(other, "is a model of blues, not of reds")
    bigger = run_cli(*common, "--models-dir", str(tmp_path / "m3"), "--steps", "1", "--model-size", "small",
                     "--init-from", str(tiny_models / "reds"))  # fmt: skip
    _one_line_error(bigger, "has another network")
    _one_line_error(run_cli(*common, "--models-dir", str(tmp_path / "m4"), "--prediction", "x0"), "unknown prediction")
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()


def test_symmetry_is_saved_changeable_on_resume_and_checked(tmp_path, tiny_models):
    data = tiny_models.parent / "reds"
    common = ["train", "--domain", "reds", "--data", str(data), "--model-size", "tiny", "--image-size", "16",
              "--batch-size", "8", "--sample-every", "0"]  # fmt: skip
    models = tmp_path / "m"
    r = run_cli(*common, "--models-dir", str(models), "--steps", "1")
    assert r.returncode == 0, r.stderr
    config = models / "reds" / "config.json"
    assert json.loads(config.read_text())["diffusion"]["symmetry"] == "none"  # a folder: no symmetry assumed
    r = run_cli(*common, "--models-dir", str(models), "--steps", "2", "--symmetry", "rgb-all")
    assert r.returncode == 0, r.stderr  # inference-only: a run may take it up when resuming
    assert json.loads(config.read_text())["diffusion"]["symmetry"] == "rgb-all"
    r = run_cli(*common, "--models-dir", str(models), "--steps", "3")  # and keeps it
    assert r.returncode == 0, r.stderr
    assert json.loads(config.read_text())["diffusion"]["symmetry"] == "rgb-all"
    r = run_cli("sample", "--domain", "reds", "-n", "2", "--steps", "2", "--models-dir", str(models),
                "--out", str(tmp_path / "s.png"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "ε̂ averaged over rgb-all: 6 network passes per NFE" in r.stdout
    grey = run_cli(*common, "--models-dir", str(tmp_path / "g"), "--steps", "1", "--channels", "1",
                   "--symmetry", "rgb-cyclic")  # fmt: skip
    _one_line_error(grey, "acts on three colour channels")
    _one_line_error(run_cli(*common, "--models-dir", str(tmp_path / "b"), "--symmetry", "hue"), "unknown symmetry")
    assert not (tmp_path / "g" / "reds" / "model.safetensors").exists() and not (tmp_path / "b").exists()


def test_smooth_time_embedding_is_saved_kept_on_resume_and_warm_startable(tmp_path, tiny_models):
    data = tiny_models.parent / "reds"
    common = ["train", "--domain", "reds", "--data", str(data), "--model-size", "tiny", "--image-size", "16",
              "--batch-size", "8", "--sample-every", "0"]  # fmt: skip
    models = tmp_path / "m"
    # Warm start from a DDPM-embedded model: fine-tuning it onto the smooth embedding.
    r = run_cli(*common, "--models-dir", str(models), "--steps", "1", "--time-embedding", "smooth",
                "--init-from", str(tiny_models / "reds"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "smooth time embedding, warm start from" in r.stdout
    config = models / "reds" / "config.json"
    cfg = json.loads(config.read_text())
    assert cfg["diffusion"]["noise_input"] == "log-snr" and cfg["model"]["time_scale"] == 10.0
    r = run_cli(*common, "--models-dir", str(models), "--steps", "2")  # resuming keeps it without the flag
    assert r.returncode == 0, r.stderr
    assert json.loads(config.read_text())["diffusion"]["noise_input"] == "log-snr"
    _one_line_error(run_cli(*common, "--models-dir", str(models), "--steps", "3", "--time-embedding", "ddpm"),
                    "holds a run with other settings")  # fmt: skip
    _one_line_error(run_cli(*common, "--models-dir", str(tmp_path / "m2"), "--time-embedding", "fourier"),
                    "unknown --time-embedding")  # fmt: skip
    r = run_cli("sample", "--domain", "reds", "-n", "2", "--steps", "2", "--models-dir", str(models),
                "--out", str(tmp_path / "s.png"))  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_the_command_line_starts_without_the_heavy_optional_imports():
    """Every command pays for what `ddib.cli` imports at start: torchvision (with torch._dynamo), torchdiffeq (with
    scipy) and diffusers load only where a command needs them (a blur, an adaptive solve, a diffusers folder)."""
    import subprocess
    import sys

    heavy = ("torchvision", "torchdiffeq", "scipy", "diffusers", "guided_diffusion", "torch._dynamo")
    code = f"import sys, ddib.cli, ddib.api; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_a_batch_too_large_for_memory_is_a_one_line_error(tmp_path):
    """Latents for 10¹¹ images exceed any address space, so the allocation fails at once on every machine."""
    r = run_cli("sample", "--domain", "fives", "-n", str(10**11), "--out", str(tmp_path / "s.png"))
    _one_line_error(r, "error: out of memory: you tried to allocate", "try a smaller --batch-size, or fewer images")
    assert r.returncode == 1 and not (tmp_path / "s.png").exists()
