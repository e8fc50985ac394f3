"""The Python API: the docs' example runs, and `ddib.translate` gives what `ddib translate` writes."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ddib
from ddib.errors import DDIBError
from ddib.model.speed import SpeedOptions

from .conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
FIVE = ROOT / "docs" / "figures" / "api-five.png"


@pytest.fixture(scope="module")
def pair():
    return ddib.load("fives"), ddib.load("sevens")


def test_the_docs_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 3
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    shutil.copy(FIVE, tmp_path / "docs" / "figures")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), scope)
    assert isinstance(scope["seven"], Image.Image) and scope["seven"].size == (32, 32)
    assert scope["latent"].hue is not None and scope["latent"].meta["source"] == "fives"
    assert np.array_equal(np.asarray(scope["again"][0]), np.asarray(scope["seven"]))
    assert scope["samples"].shape == (4, 3, 32, 32) and (tmp_path / "five.safetensors").is_file()
    assert scope["likelier"] == "fives"


def test_translate_gives_the_png_the_command_writes(tmp_path, pair):
    out = tmp_path / "seven.png"
    r = run_cli("translate", str(FIVE), "--from", "fives", "--to", "sevens", "--out", str(out))
    assert r.returncode == 0, r.stderr
    (api_png,) = ddib.translate([Image.open(FIVE)], "fives", "sevens")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(api_png))
    x = torch.from_numpy(np.array(Image.open(FIVE))).permute(2, 0, 1)[None].float() / 127.5 - 1
    y = ddib.translate(x, *pair)
    assert torch.equal(ddib.io.images.to_uint8(y[0]).permute(1, 2, 0), torch.from_numpy(np.array(api_png)))


def test_encode_then_decode_is_translate_and_progress_counts(pair):
    fives, sevens = pair
    x = ddib.sample(fives, 3, seed=2, steps=6)
    events = []
    y = ddib.translate(x, fives, sevens, steps=6, batch_size=2, progress=events.append)
    latent = ddib.encode(fives, x, steps=6, batch_size=2)
    assert torch.equal(ddib.decode(sevens, latent, steps=6, batch_size=2), y)
    assert events[-1].done == 3 and events[-1].total == 3
    assert events[-1].nfe == 2 * (6 + 6) and events[-1].per_batch == 12  # two batches, encode + decode each
    assert [e.done for e in events if e.batch_nfe == 12] == [0, 2, 2, 3]  # last evaluation, then the batch's end


def test_bad_input_is_a_one_line_error(pair):
    fives, sevens = pair
    with pytest.raises(DDIBError, match=r"images of shape \(3, 16, 16\) do not fit"):
        ddib.translate(torch.zeros(1, 3, 16, 16), fives, sevens)
    with pytest.raises(DDIBError, match="float tensor"):
        ddib.encode(fives, np.zeros((1, 3, 32, 32)))
    with pytest.raises(DDIBError, match=r"must lie in \[-1, 1\]; these lie in \[0, 255\], as 0–255 images do"):
        ddib.encode(fives, torch.linspace(0, 255, 3 * 32 * 32).reshape(1, 3, 32, 32))
    rough = torch.linspace(-300, 300, 3 * 32 * 32).reshape(1, 3, 32, 32)  # a rough model's decode: valid input
    assert ddib.encode(fives, rough, steps=2).z.shape == rough.shape
    with pytest.raises(DDIBError, match="no images given"):
        ddib.encode(fives, torch.zeros(0, 3, 32, 32))
    with pytest.raises(DDIBError, match="positive integer, got 0"):
        ddib.sample(sevens, 0)
    with pytest.raises(DDIBError, match="positive integer, got '6'"):
        ddib.sample(sevens, 1, steps="6")
    x = torch.zeros(1, 3, 32, 32)
    for bad in (0, -1, 2.0):  # a negative batch once sliced the images into nothing and returned no images
        with pytest.raises(DDIBError, match=f"batch_size must be a positive integer, got {bad!r}"):
            ddib.translate(x, fives, sevens, batch_size=bad)
        with pytest.raises(DDIBError, match=f"batch_size must be a positive integer, got {bad!r}"):
            ddib.likelihoods(fives, x, batch_size=bad)
    assert ddib.encode(fives, x, steps=2, batch_size=np.int64(1)).z.shape == x.shape  # numpy counts are counts
    with pytest.raises(DDIBError, match="probes must be a positive integer, got 0"):
        ddib.likelihoods(fives, x, probes=0)
    with pytest.raises(DDIBError, match="levels must be a positive integer, got 0"):
        ddib.likelihoods(fives, x, method="elbo", levels=0)
    with pytest.raises(DDIBError, match="seed must be an integer, got 'a'"):
        ddib.sample(sevens, 1, seed="a")
    with pytest.raises(DDIBError, match=r"latents have shape \(3, 8, 8\)"):
        ddib.decode(sevens, torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError, match="unknown solve option"):
        ddib.translate(torch.zeros(1, 3, 32, 32), fives, sevens, stepz=3)
    with pytest.raises(DDIBError, match="unknown solver"):
        ddib.translate(torch.zeros(1, 3, 32, 32), fives, sevens, solver="magic")
    with pytest.raises(DDIBError, match="unknown device 'gpu'"):
        ddib.load("fives", "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DDIBError, match="CUDA is not available"):
            ddib.translate(torch.zeros(1, 3, 32, 32), "fives", "sevens", device="cuda")


def test_models_and_latents_print_on_one_line(pair):
    fives, _ = pair
    assert repr(fives) == f"DomainModel('fives': ddib 3×32×32, cosine, v; {fives.location.path})"
    latent = ddib.encode(fives, ddib.sample(fives, 2, seed=0, steps=4), steps=4)
    text = repr(latent)
    assert "\n" not in text and "tensor" not in text
    assert text == "Latent(z=(2, 3, 32, 32) float32 on cpu, hue=(2,) float32, label=None, meta={'source': 'fives'})"


def test_speed_names_kernel_settings_and_autocast_only_decodes(pair):
    fives, sevens = pair
    x = ddib.sample(fives, 2, seed=1, steps=4)
    z = ddib.encode(fives, x, steps=4, speed="eager").z
    assert torch.equal(ddib.encode(fives, x, steps=4, speed="bf16").z, z)  # an encode never runs in bf16
    exact = ddib.decode(sevens, z, steps=4, speed="eager")
    low = ddib.decode(sevens, z, steps=4, speed=SpeedOptions(fp16=True))
    assert not torch.equal(low, exact) and (low - exact).abs().max() < 0.1
    with pytest.raises(DDIBError, match="unknown speed setting"):
        ddib.sample(fives, 1, steps=2, speed="turbo")


def test_likelihoods_give_the_numbers_the_command_writes(tmp_path, pair):
    import json

    fives, sevens = pair
    seven = tmp_path / "seven.png"
    ddib.sample(sevens, 1, seed=3, steps=8, pil=True)[0].save(seven)
    files = [FIVE, seven]
    r = run_cli("likelihood", *map(str, files), "--domain", "fives", "--domain", "sevens", "--method", "elbo",
                "--levels", "4", "--batch-size", "1", "--json", str(tmp_path / "ll.json"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    expected = json.loads((tmp_path / "ll.json").read_text())["results"]
    events = []
    scores = ddib.likelihoods([fives, sevens], [Image.open(f) for f in files], method="elbo", levels=4, batch_size=1,
                              progress=events.append)  # fmt: skip
    assert [(e.done, e.total, e.nfe, e.batch_nfe) for e in events] == [(1, 2, 8, 8), (2, 2, 16, 8)]  # 4 per model
    for name in ("fives", "sevens"):
        got = torch.stack([scores[name].bits_per_dim, scores[name].stderr], 1)
        assert torch.allclose(got, torch.tensor([row[name] for row in expected]), rtol=1e-5), name
    assert scores["fives"].nfe == 2 * 4 and scores["fives"].draws.shape == (2, 4)
    bpd = {name: score.bits_per_dim for name, score in scores.items()}
    assert bpd["fives"][0] < bpd["sevens"][0] and bpd["sevens"][1] < bpd["fives"][1]  # each likelier in its domain
    x = ddib.io.images.to_unit_range(torch.from_numpy(np.array(Image.open(FIVE))).permute(2, 0, 1)[None])
    again = ddib.likelihoods(fives, x, method="elbo", levels=4, batch_size=1)["fives"]  # a tensor: the same 8-bit image
    assert torch.equal(again.draws, scores["fives"].draws[:1])
    with pytest.raises(DDIBError, match="distinct names"):
        ddib.likelihoods([fives, fives], x)
    with pytest.raises(DDIBError, match="unknown method"):
        ddib.likelihoods(fives, x, method="exact")
    with pytest.raises(DDIBError, match="point domains"):
        ddib.likelihoods("moons", x)
