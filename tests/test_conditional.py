"""One class-conditional model as both ends of the bridge: labels, label dropout, guidance, and the CLI."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ddib.bridge import ode
from ddib.errors import DDIBError
from ddib.model import checkpoint as ckpt
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.nets import MLPConfig, build_network, unet_config
from ddib.train.loop import TrainOptions, train

from .conftest import REPO, make_blob_images, run_cli
from .problems import conditional_gaussian_model, gaussian_flow, gaussian_mixture_model, gaussian_model
from .test_cli import _one_line_error

MEANS = torch.tensor([[1.5, -0.5], [-1.0, 1.0]], dtype=torch.float64)
STD = 0.4


@pytest.mark.parametrize("cfg", [unet_config("tiny", image_size=8), MLPConfig(width=32, num_blocks=1)])
def test_the_label_changes_the_output_and_no_label_is_the_null_class(cfg):
    import dataclasses

    torch.manual_seed(0)
    net = build_network(dataclasses.replace(cfg, num_classes=3))
    with torch.no_grad():  # as after training: no zero-initialised layer left, every class its own vector
        for p in net.parameters():
            p.normal_(0, 0.2)
    x, t = torch.randn(4, *cfg.data_shape), torch.rand(4)
    out = {k: net(x, t, torch.full((4,), k)) for k in range(4)}
    assert not torch.allclose(out[0], out[1], atol=1e-4)  # a wrong label gives another ε̂
    assert torch.equal(net(x, t), out[3])  # no labels = the null label, index num_classes
    model = Diffusion(net, DiffusionConfig())
    assert torch.equal(model.with_label(1).eps(x, t), model.with_label(1).eps(x, t))
    assert torch.allclose(model.with_label(1).eps(x, t), out[1]) and torch.allclose(model.eps(x, t), out[3])
    with pytest.raises(DDIBError, match="not one of the network's 3 classes"):
        model.with_label(3)
    with pytest.raises(DDIBError, match="not class-conditional"):
        Diffusion(build_network(cfg), DiffusionConfig()).with_label(0)


def test_label_dropout_trains_the_null_label():
    import dataclasses

    torch.manual_seed(0)
    cfg = dataclasses.replace(MLPConfig(width=32, num_blocks=1), num_classes=2)
    model = Diffusion(build_network(cfg), DiffusionConfig())
    x0, labels = torch.randn(64, 2), torch.randint(0, 2, (64,))

    def loss(y, p):
        return model.loss(x0, torch.Generator().manual_seed(5), y, p)

    null = torch.full_like(labels, 2)
    assert loss(labels, 1.0) == loss(null, 0.0)  # every label dropped: the union's loss
    assert loss(labels, 0.0) != loss(null, 0.0)
    assert loss(labels, 0.0) != loss(labels, 0.5) != loss(labels, 1.0)  # some dropped


def test_bridge_between_two_labels_of_one_model_is_the_exact_gaussian_map():
    model = conditional_gaussian_model(MEANS, STD)
    a, b = model.with_label(0), model.with_label(1)
    x = MEANS[0] + STD * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    opts = ode.ODEOptions("dopri5", rtol=1e-9, atol=1e-9)
    y = ode.translate(a, b, x, opts)
    ga, gb = gaussian_model(MEANS[0], STD), gaussian_model(MEANS[1], STD)
    z = gaussian_flow(ga, x, MEANS[0], STD, 0.0, 1.0)
    expected = gaussian_flow(gb, z, MEANS[1], STD, 1.0, 0.0)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-6)
    # No label: the union (the mixture's exact ε).
    xt, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(model.eps(xt, t), gaussian_mixture_model(MEANS, STD).eps(xt, t))


def test_guidance_extrapolates_from_the_union_to_the_class():
    model = conditional_gaussian_model(MEANS, STD)
    xt, t = torch.randn(5, 2, dtype=torch.float64), torch.full((5,), 0.5, dtype=torch.float64)
    cond, union = model.with_label(1).eps(xt, t), model.eps(xt, t)
    torch.testing.assert_close(model.with_label(1, guidance=2.0).eps(xt, t), 3 * cond - 2 * union)
    with pytest.raises(DDIBError, match="guidance needs a class label"):
        Diffusion(model.net, model.config, None, 1.0)


def _cfg():
    import dataclasses

    return ckpt.RunConfig(
        model=dataclasses.replace(unet_config("tiny", image_size=16), num_classes=2),
        diffusion=DiffusionConfig(),
        train=ckpt.TrainConfig(batch_size=8, lr=2e-3, warmup_steps=5, label_dropout=0.25),
        domain={"name": "pair", "kind": "group", "labels": ["a", "b"], "members": []},
    )


def test_conditional_training_resumes_bit_identically_and_needs_its_labels(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(24) % 2
    train(tmp_path / "once", _cfg(), data, TrainOptions(steps=6, save_every=100), labels=labels)
    train(tmp_path / "twice", _cfg(), data, TrainOptions(steps=3, save_every=100), labels=labels)
    train(tmp_path / "twice", _cfg(), data, TrainOptions(steps=6, save_every=100), labels=labels)
    a, b = (ckpt.load_train_state(tmp_path / d)["net"] for d in ("once", "twice"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(DDIBError, match="one label per training example"):
        train(tmp_path / "x", _cfg(), data, TrainOptions(steps=1, save_every=100))
    with pytest.raises(DDIBError, match=r"labels must lie in \[0, 2\)"):
        train(tmp_path / "y", _cfg(), data, TrainOptions(steps=1, save_every=100), labels=labels + 1)


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory):
    """A tiny conditional model over two folder domains, reds and blues, trained through the CLI."""
    root = tmp_path_factory.mktemp("cond")
    reds = make_blob_images(root / "reds", 16, (230, 30, 30), seed=1)
    blues = make_blob_images(root / "blues", 16, (30, 30, 230), seed=2)
    r = run_cli("train", "--domain", "pair", "--data", f"reds={reds}", "--data", f"blues={blues}", "--models-dir",
                str(root / "models"), "--model-size", "tiny", "--image-size", "16", "--steps", "30", "--batch-size",
                "8", "--lr", "2e-3", "--sample-every", "30")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "conditional on 2 labels" in r.stdout and (root / "models" / "pair" / "samples").is_dir()
    return root


def test_train_records_labels_and_label_dropout(pair_model):
    cfg = json.loads((pair_model / "models" / "pair" / "config.json").read_text())
    assert cfg["domain"]["kind"] == "group" and cfg["domain"]["labels"] == ["reds", "blues"]
    assert cfg["model"]["num_classes"] == 2 and cfg["train"]["label_dropout"] == 0.1
    r = run_cli("models", "--models-dir", str(pair_model / "models"))
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") > 3}
    assert {"pair", "reds", "blues"} <= set(rows) and "conditional" in rows["pair"]
    assert "pair: conditional" in rows["reds"] and "pair: conditional" in rows["blues"]


def test_translate_uses_one_conditional_model_at_both_ends(pair_model, tmp_path):
    src = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=9)
    models = ["--models-dir", str(pair_model / "models")]
    r = run_cli("translate", str(src), "--from", "reds", "--to", "blues", "--steps", "4", *models)
    assert r.returncode == 0, r.stderr
    assert "reds → blues (both pair: conditional, local)" in r.stdout
    assert sorted(p.name for p in (tmp_path / "in-to-blues").iterdir()) == ["img000.png", "img001.png"]
    r = run_cli("translate", str(src), "--from", "pair:reds", "--to", "pair:blues", "--steps", "4", "--guidance",
                "1.5", "--out-dir", str(tmp_path / "guided"), *models)  # fmt: skip
    assert r.returncode == 0 and "guidance w = 1.5" in r.stdout, r.stderr
    a = (tmp_path / "in-to-blues" / "img000.png").read_bytes()
    assert a != (tmp_path / "guided" / "img000.png").read_bytes()
    _one_line_error(run_cli("translate", str(src), "--from", "pair:greens", "--to", "blues", *models),
                    "pair has no label 'greens'; its labels are reds, blues")  # fmt: skip
    _one_line_error(run_cli("sample", "--domain", "pair", "--guidance", "1", *models), "--guidance needs a label")


def test_sample_decode_perturb_likelihood_classify_take_labels(pair_model, tmp_path):
    models = ["--models-dir", str(pair_model / "models")]
    r = run_cli("sample", "--domain", "reds", "-n", "2", "--steps", "3", "--out", str(tmp_path / "s.png"), *models)
    assert r.returncode == 0 and "pair: conditional, local" in r.stdout, r.stderr
    r = run_cli("sample", "--domain", "pair", "-n", "2", "--steps", "3", "--out", str(tmp_path / "u.png"), *models)
    assert r.returncode == 0, r.stderr  # no label: the union of reds and blues
    src = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=9)
    r = run_cli("translate", str(src), "--from", "reds", "--to", "blues", "--steps", "3", "--save-latent",
                str(tmp_path / "z.safetensors"), *models)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run_cli("decode", str(tmp_path / "z.safetensors"), "--to", "blues", "--steps", "3", *models)
    assert r.returncode == 0 and "pair: conditional, local" in r.stdout, r.stderr
    r = run_cli("perturb", str(src), "--from", "reds", "--to", "blues", "--op", "blur", "--coef", "0.5", "--steps",
                "2", "--out", str(tmp_path / "p.png"), *models)  # fmt: skip
    assert r.returncode == 0 and "reds → blues (both pair: conditional, local)" in r.stdout, r.stderr
    r = run_cli("classify", str(src), "--domain", "pair", "--method", "elbo", "--levels", "4", *models)
    assert r.returncode == 0, r.stderr
    assert all(("reds (" in line and "blues (" in line) for line in r.stdout.strip().splitlines())
    r = run_cli("likelihood", str(src), "--domain", "pair", "--method", "elbo", "--levels", "4", *models)
    assert r.returncode == 0 and "reds bits/dim" in r.stdout and "blues bits/dim" in r.stdout, r.stderr
    r = run_cli("evaluate", "--from", "reds", "--to", "blues", "--inputs", str(src), "--steps", "2", "--guidance",
                "0.5", "--json", str(tmp_path / "e.json"), *models)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "e.json").read_text())["target_model"] == "pair: conditional, local"


def test_torchrun_trains_a_conditional_model(tmp_path):
    reds = make_blob_images(tmp_path / "reds", 8, (230, 30, 30), seed=1)
    blues = make_blob_images(tmp_path / "blues", 8, (30, 30, 230), seed=2)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ddib",
           "train", "--domain", "pair", "--data", f"reds={reds}", "--data", f"blues={blues}", "--models-dir",
           str(tmp_path / "m"), "--model-size", "tiny", "--image-size", "16", "--batch-size", "8", "--sample-every",
           "0"]  # fmt: skip
    r = subprocess.run([*cmd, "--steps", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cmd, "--steps", "3"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "resuming at step 2/3" in r.stdout, r.stderr
    assert "weights identical on all 2 processes" in r.stdout
    assert ckpt.read_config(tmp_path / "m" / "pair")[0].model.num_classes == 2


def test_export_copies_a_conditional_model_with_its_labels(pair_model, tmp_path):
    models = ["--models-dir", str(pair_model / "models")]
    r = run_cli("export", "--domain", "pair", "--out", str(tmp_path / "shipped" / "pair"), "--fp16", *models)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "shipped" / "pair" / "config.json").read_text())
    assert cfg["domain"]["labels"] == ["reds", "blues"] and cfg["model"]["num_classes"] == 2
    _one_line_error(run_cli("export", "--domain", "reds", "--out", str(tmp_path / "x"), *models),
                    "reds is a label of the conditional model pair")  # fmt: skip
    src = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=9)
    r = run_cli("translate", str(src), "--from", f"{tmp_path / 'shipped' / 'pair'}:reds", "--to",
                f"{tmp_path / 'shipped' / 'pair'}:blues", "--steps", "2")  # fmt: skip
    assert r.returncode == 0 and "conditional" in r.stdout, r.stderr


def test_domain_resolution_order_with_conditional_models(pair_model, tmp_path, monkeypatch):
    import shutil

    from ddib.model import registry

    bundled, local = tmp_path / "bundled", tmp_path / "local"
    shutil.copytree(pair_model / "models" / "pair", bundled / "pair")
    shutil.copytree(pair_model / "models" / "pair", bundled / "reds")  # stands in for a bundled model of one domain
    monkeypatch.setattr(registry, "BUNDLED_DIR", bundled)
    local.mkdir()
    loc = registry.find_model("blues", local)
    assert (loc.label, loc.origin, loc.path) == ("blues", "bundled", bundled / "pair")  # a bundled model's label
    assert registry.find_model("reds", local).label is None  # a bundled model of the domain comes first
    shutil.copytree(pair_model / "models" / "pair", local / "pair")
    loc = registry.find_model("reds", local)
    assert (loc.label, loc.origin) == ("reds", "local")  # a local conditional model beats anything bundled
    shutil.copytree(pair_model / "models" / "pair", local / "reds")
    assert registry.find_model("reds", local).label is None  # and a local model of the domain beats that
    assert registry.find_model("pair:reds", local).label == "reds"  # unless the label is asked for
    assert {m.domain for m in registry.available_models(local)} == {"pair", "reds", "blues"}
    assert registry.find_model("pair", local).is_union
