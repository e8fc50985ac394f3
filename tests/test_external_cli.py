"""Every command, and the Python API, on models trained elsewhere: tiny diffusers and guided-diffusion models,
registered or by path."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import ddib
from ddib.errors import DDIBError

from .conftest import REPO, make_blob_images, run_cli
from .external_models import (
    CLASSIFIER_FLAGS,
    GUIDED_FLAGS,
    SIZE,
    save_classifier,
    save_guided,
    save_pipeline,
    tiny_unet,
)

pytest.importorskip("diffusers")
pytest.importorskip("guided_diffusion")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A models dir with `dif` (a diffusers folder) and `gd` (a guided-diffusion checkpoint) registered, and 6
    16×16 images (twice the models' size)."""
    root = tmp_path_factory.mktemp("foreign")
    save_pipeline(root / "dif", prediction="v_prediction")
    save_guided(root / "gd", "improved-like")
    images = make_blob_images(root / "images", 6, (200, 40, 40), seed=3, size=16)
    models = root / "models"
    for name, path in (("dif", root / "dif"), ("gd", root / "gd" / "improved-like.pt")):
        r = run_cli("models", "add", name, str(path), "--models-dir", str(models))
        assert r.returncode == 0 and f"registered {name}" in r.stdout, r.stderr
    return root, models, images


def _ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def _one_line_error(r, *fragments):
    err = r.stderr.strip()
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(err.splitlines()) == 1, r.stderr
    for f in fragments:
        assert f in err, err


def test_models_lists_format_resolution_schedule_and_parameterisation(foreign):
    _, models, _ = foreign
    out = _ok(run_cli("models", "--models-dir", str(models)))
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert f"diffusers {SIZE}×{SIZE}, 3 channels" in rows["dif"] and "linear β × 1000, v" in rows["dif"]
    assert "guided-diffusion" in rows["gd"] and "linear β × 1000" in rows["gd"] and "ε" in rows["gd"]
    ref = json.loads((models / "dif" / "reference.json").read_text())
    assert ref["model_format"] == "diffusers" and not (models / "dif" / "unet").exists()  # a reference, not a copy


def test_translate_by_name_and_by_path_resizes_and_says_so(foreign, tmp_path):
    root, models, images = foreign
    out = _ok(run_cli("translate", str(images), "--from", "dif", "--to", "gd", "--out-dir", str(tmp_path / "a"),
                      "--steps", "4", "--models-dir", str(models)))  # fmt: skip
    assert "dif (diffusers, local) → gd (guided-diffusion, local)" in out
    assert f"6 of 6 resized to {SIZE}×{SIZE} (centre crop)" in out and len(list((tmp_path / "a").glob("*.png"))) == 6
    out = _ok(run_cli("translate", str(images / "img000.png"), "--from", str(root / "dif"), "--to",
                      str(root / "gd" / "improved-like.pt"), "--out", str(tmp_path / "b.png"), "--steps", "4",
                      "--resize", "stretch"))  # fmt: skip
    assert "(stretched)" in out and (tmp_path / "b.png").exists()


def test_sample_perturb_likelihood_evaluate_and_bench_take_foreign_models(foreign, tmp_path):
    _, models, images = foreign
    md = ("--models-dir", str(models))
    _ok(run_cli("sample", "--domain", "gd", "-n", "2", "--steps", "4", "--out", str(tmp_path / "s.png"), *md))
    out = _ok(run_cli("perturb", str(images), "--from", "dif", "--to", "gd", "--op", "checkerboard", "--coef",
                      "0.3", "--steps", "4", "--out", str(tmp_path / "p.png"), "--resize", "stretch", *md))  # fmt: skip
    assert "6 of 6 resized" in out and "(stretched)" in out
    out = _ok(run_cli("likelihood", str(images / "img000.png"), "--domain", "dif", "--domain", "gd", "--method",
                      "elbo", "--levels", "4", "--json", str(tmp_path / "l.json"), *md))  # fmt: skip
    assert {"dif", "gd"} <= set(json.loads((tmp_path / "l.json").read_text())["results"][0]), out
    assert "1 image, 1 of 1 resized" in out
    _ok(run_cli("evaluate", "--from", "dif", "--to", "gd", "--inputs", str(images), "--steps", "4", "--json",
                str(tmp_path / "e.json"), *md))  # fmt: skip
    assert json.loads((tmp_path / "e.json").read_text())["n"] == 6
    _ok(run_cli("bench", "translate", "--from", "dif", "--to", "gd", "--inputs", str(images), "-n", "4", "--quick",
                "--no-cycle", "--out-dir", str(tmp_path / "bt"), *md))  # fmt: skip
    assert (tmp_path / "bt" / "translate-cpu.md").exists()


def test_tune_solver_keeps_a_foreign_models_solves_in_its_reference(foreign, tmp_path):
    root, models, images = foreign
    more = make_blob_images(tmp_path / "six", 6, (40, 200, 40), seed=4, size=16)
    md = ("--models-dir", str(models))
    _ok(run_cli("tune-solver", "--from", "dif", "--to", "gd", "--steps", "3", "-n", "4", "--val", "2", "--inputs",
                str(more), "--reference", "unipc:12", "--iterations", "2", *md))  # fmt: skip
    for name, direction in (("dif", "encode"), ("gd", "decode")):
        entry = json.loads((models / name / "reference.json").read_text())["solver_grids"]["unipc:3"]
        assert len(entry[direction]) == 4
    out = _ok(run_cli("translate", str(images / "img001.png"), "--from", "dif", "--to", "gd", "--steps", "3", "--out",
                      str(tmp_path / "t.png"), *md))  # fmt: skip
    assert "tuned grid" in out
    r = run_cli("tune-solver", "--domain", str(root / "dif"), "--steps", "3", "-n", "4", "--val", "2", "--inputs",
                str(more), *md)  # fmt: skip
    _one_line_error(r, "ddib models add NAME")


def test_foreign_model_errors_are_one_line(foreign, tmp_path):
    root, models, images = foreign
    md = ("--models-dir", str(models))
    _one_line_error(run_cli("translate", str(images), "--from", "google/ddpm-cat-256", "--to", "gd", *md),
                    "not a local folder", "huggingface-cli download google/ddpm-cat-256")  # fmt: skip
    _one_line_error(run_cli("train", "--domain", "dif", "--data", str(images), *md), "registered diffusers model",
                    "trains and resumes only its own format")  # fmt: skip
    _one_line_error(run_cli("models", "add", "dif", str(root / "dif"), *md), "already holds a registered model")
    _one_line_error(run_cli("export", "--domain", "dif", "--out", str(tmp_path / "copy"), *md),
                    "dif is a diffusers model", "`ddib export` copies models ddib trained")  # fmt: skip
    _one_line_error(run_cli("models", "add", "x", str(root / "dif"), "--label", "2", *md), "has no classes")
    _one_line_error(run_cli("models", "add", "y", str(images), *md), "neither a diffusers folder")
    _one_line_error(run_cli("models", "add", "y", str(REPO / "ddib" / "assets" / "models" / "sevens"), *md),
                    "is a ddib model", "ddib export --domain")  # fmt: skip
    bare, _ = save_guided(tmp_path / "bare", "improved-like", flags_beside=False)
    _one_line_error(run_cli("translate", str(images), "--from", str(bare), "--to", "gd", *md), "needs its model flags")
    flags = "--image_size 8 --num_channels 32 --num_res_blocks 1 --channel_mult 1,2 --attention_resolutions 8,4"
    _one_line_error(run_cli("models", "add", "z", str(bare), "--flags", flags, *md), "does not match its flags",
                    "missing", "unexpected")  # fmt: skip
    good = "--image_size 8 --num_channels 32 --num_res_blocks 2 --channel_mult 1,2 --attention_resolutions 8,4 " \
           "--num_heads 4 --use_scale_shift_norm False"  # fmt: skip
    assert "registered z" in _ok(run_cli("models", "add", "z", str(bare), "--flags", good, *md))
    _one_line_error(run_cli("translate", str(images), "--from", "dif", "--to", "gd", "--resize", "pad", *md),
                    "unknown --resize")  # fmt: skip


def test_a_folder_in_the_working_directory_is_a_model_when_no_domain_has_its_name(foreign, tmp_path):
    """`huggingface-cli download ... --local-dir ddpm-cat-256` then `--from ddpm-cat-256`, without a slash."""
    root, models, images = foreign
    out = _ok(run_cli("translate", str(images / "img001.png"), "--from", "dif", "--to", "gd/improved-like.pt",
                      "--steps", "3", "--out", str(tmp_path / "a.png"), "--models-dir", str(tmp_path / "none"),
                      cwd=root))  # fmt: skip
    assert "dif (diffusers, dif) → improved-like (guided-diffusion" in out
    # a name that is both: the registered domain wins, as `--to fives` is the model, not a folder called fives; a
    # folder that holds no model (a data folder named like its domain) leaves the name unknown
    out = _ok(run_cli("translate", str(images / "img001.png"), "--from", "dif", "--to", "gd", "--steps", "3",
                      "--out", str(tmp_path / "b.png"), "--models-dir", str(models), cwd=root))  # fmt: skip
    assert "dif (diffusers, local)" in out
    _one_line_error(run_cli("translate", str(images / "img001.png"), "--from", "images", "--to", "gd",
                            "--models-dir", str(models), cwd=root), "no trained model for domain 'images'")  # fmt: skip
    _one_line_error(run_cli("translate", str(images / "img001.png"), "--from", "dif:3", "--to", "dif",
                            "--models-dir", str(tmp_path / "none"), cwd=root),
                    "is not class-conditional, so it has no label 3")  # fmt: skip


def test_a_class_conditional_checkpoint_gives_one_domain_per_label(tmp_path):
    path, _ = save_guided(tmp_path, "imagenet-like")
    images = make_blob_images(tmp_path / "im", 2, (200, 40, 40), seed=5, size=16)
    models = tmp_path / "models"
    out = _ok(run_cli("translate", str(images), "--from", f"{path}:260", "--to", f"{path}:261", "--steps", "3",
                      "--out-dir", str(tmp_path / "o")))  # fmt: skip
    assert "imagenet-like:260" in out and "imagenet-like:261" in out
    _ok(run_cli("models", "add", "tabby", str(path), "--label", "281", "--models-dir", str(models)))
    tabby = f"guided-diffusion 3×{SIZE}×{SIZE}, linear β × 1000, ε, label 281; {path}"
    assert repr(ddib.load("tabby", models_dir=models)) == f"DomainModel('tabby': {tabby})"
    _one_line_error(
        run_cli("models", "add", "cls", str(path), "--models-dir", str(models)), "give the class with --label"
    )
    r = run_cli("translate", str(images), "--from", str(path), "--to", "tabby", "--models-dir", str(models))
    _one_line_error(r, "is class-conditional")


def test_python_load_takes_a_checkpoints_flags_as_text_or_dict(foreign, tmp_path, monkeypatch):
    path, _ = save_guided(tmp_path / "ckpt", "imagenet-like", flags_beside=False)
    flags = GUIDED_FLAGS["imagenet-like"]
    with pytest.raises(DDIBError, match="needs its model flags"):
        ddib.load(f"{path}:3")
    x = torch.rand((2, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0)) * 2 - 1
    by_text = ddib.load(f"{path}:3", flags=" ".join(f"--{k} {v}" for k, v in flags.items()))
    by_dict = ddib.load(f"{path}:3", flags=flags)
    assert torch.equal(ddib.encode(by_text, x, steps=3).z, ddib.encode(by_dict, x, steps=3).z)
    other = ddib.encode(ddib.load(f"{path}:4", flags=flags), x, steps=3).z
    assert not torch.allclose(other, ddib.encode(by_dict, x, steps=3).z)  # the label reaches the network
    save_classifier(tmp_path / "cls" / "c.pt")
    monkeypatch.chdir(tmp_path)  # given here, a relative classifier path is from the working directory
    guided = ddib.load(f"{path}:3", flags={**flags, **CLASSIFIER_FLAGS, "classifier_path": "cls/c.pt"})
    assert guided.diffusion.classifier is not None and by_dict.diffusion.classifier is None
    with pytest.raises(DDIBError, match="flags are guided-diffusion's MODEL_FLAGS text, JSON text or a dict, not int"):
        ddib.load(f"{path}:3", flags=5)
    with pytest.raises(DDIBError, match="flags are for guided-diffusion checkpoints; .* is a diffusers model"):
        ddib.load(foreign[0] / "dif", flags=flags)


def test_a_noisy_classifier_in_the_flags_guides_every_decode(tmp_path):
    """The official DDIB's ImageNet run: encode with label 260, decode with 261 guided by the classifier."""
    flags, _ = save_classifier(tmp_path / "ckpt" / "classifier.pt")
    path, _ = save_guided(tmp_path / "ckpt", "imagenet-like", **{**flags, "classifier_path": "classifier.pt"},
                          classifier_scale=20)  # fmt: skip
    image = make_blob_images(tmp_path / "im", 1, (200, 40, 40), seed=5, size=16) / "img000.png"
    common = ("--from", f"{path}:260", "--to", f"{path}:261", "--steps", "3", "--solver", "ddim", "--clip")
    out = _ok(run_cli("translate", str(image), *common, "--out", str(tmp_path / "g.png")))
    assert "classifier-guided decode (scale 20)" in out
    out = _ok(run_cli("translate", str(image), *common, "--classifier-scale", "0", "--out", str(tmp_path / "u.png")))
    assert "classifier-guided" not in out
    guided, unguided = (np.asarray(Image.open(tmp_path / f), dtype=float) for f in ("g.png", "u.png"))
    assert np.abs(guided - unguided).max() > 0
    # registered with the flags on the command line: a relative classifier_path is from the working directory
    models, text = tmp_path / "models", " ".join(f"--{k} {v}" for k, v in CLASSIFIER_FLAGS.items())
    bare, _ = save_guided(tmp_path / "bare", "imagenet-like", flags_beside=False)
    shape = " ".join(f"--{k} {v}" for k, v in GUIDED_FLAGS["imagenet-like"].items())
    add = ("models", "add", "keeshonds", str(bare), "--label", "261", "--models-dir", str(models), "--flags",
           f"{shape} {text} --classifier_path ckpt/classifier.pt --classifier_scale 2")  # fmt: skip
    assert "registered keeshonds" in _ok(run_cli(*add, cwd=tmp_path))
    cells, key = {}, ""  # the model column by domain, its wrapped lines joined
    for line in _ok(run_cli("models", "--models-dir", str(models))).splitlines():
        if line.startswith("│"):
            domain, _, model = (c.strip() for c in line.split("│")[1:4])
            key = domain or key
            cells[key] = f"{cells.get(key, '')} {model}".strip()
    assert cells["keeshonds"].endswith("label 261 of 1000 classes, classifier-guided (scale 2)"), cells

    _ok(run_cli("translate", str(image), "--from", f"{path}:260", "--to", "keeshonds", "--steps", "2", "--out",
                str(tmp_path / "k.png"), "--models-dir", str(models)))  # fmt: skip
    # an unconditional checkpoint guided by the classifier: its labels are the classifier's classes
    uncond, _ = save_guided(tmp_path / "ckpt", "improved-like", **{**flags, "classifier_path": "classifier.pt"})
    out = _ok(run_cli("translate", str(image), "--from", str(uncond), "--to", f"{uncond}:261", "--steps", "2",
                      "--out", str(tmp_path / "v.png")))  # fmt: skip
    assert "→ improved-like:261" in out and "classifier-guided decode (scale 1)" in out
    plain, _ = save_guided(tmp_path / "plain", "imagenet-like")
    _one_line_error(run_cli("translate", str(image), "--from", f"{path}:260", "--to", f"{plain}:261",
                            "--classifier-scale", "1"), "--classifier-scale needs a decoding model")  # fmt: skip
    _one_line_error(run_cli("translate", str(image), *common, "--classifier-scale", "-1"), "finite number ≥ 0")


def test_translate_between_tables_of_different_reach_meets_where_both_reach(foreign, tmp_path):
    """A squaredcos_cap_v2 table (σ̄ up to 2·10⁴) bridged to a linear one (157): the CLI's images are the
    library's `ode.translate`, which meets at the smaller σ̄_max."""
    import torch

    from ddib.bridge import ode
    from ddib.io.images import read_images, to_uint8, to_unit_range
    from ddib.model.external import load_external

    root, _, images = foreign
    cos = save_pipeline(tmp_path / "cos", schedule="squaredcos_cap_v2", prediction="v_prediction")
    gd = root / "gd" / "improved-like.pt"
    src = images / "img002.png"
    _ok(run_cli("translate", str(src), "--from", str(cos), "--to", str(gd), "--steps", "6", "--out",
                str(tmp_path / "o.png")))  # fmt: skip
    a, b = load_external(cos, "diffusers"), load_external(gd, "guided-diffusion")
    assert a.schedule.sigma_max > 1e4 and b.schedule.sigma_max < 200
    x = to_unit_range(read_images([src], SIZE, 3).pixels)
    expected = to_uint8(ode.translate(a, b, x, ode.ODEOptions(steps=6)))[0]
    got = torch.from_numpy(np.asarray(Image.open(tmp_path / "o.png")).copy()).permute(2, 0, 1)
    assert (got.int() - expected.int()).abs().max() <= 1


def test_clip_decodes_with_a_clipped_x0_says_so_and_is_refused_for_points(foreign, tmp_path):
    root, models, images = foreign
    md = ("--models-dir", str(models))
    outs = {}
    for clip in ((), ("--clip",)):
        out = _ok(run_cli("translate", str(images / "img000.png"), "--from", "gd", "--to", "dif", "--steps", "4",
                          "--out", str(tmp_path / f"o{len(clip)}.png"), *clip, *md))  # fmt: skip
        assert ("x̂₀ clipped when decoding" in out) == bool(clip), out
        outs[clip] = np.asarray(Image.open(tmp_path / f"o{len(clip)}.png"), dtype=np.int16)
    assert np.abs(outs[()] - outs[("--clip",)]).max() > 8  # the tiny random model's x̂₀ leaves [-1, 1]
    _one_line_error(run_cli("sample", "--domain", "moons", "-n", "8", "--steps", "2", "--clip",
                            "--out", str(tmp_path / "m.csv")), "--clip is for image models", "points")  # fmt: skip


def test_models_remove_unregisters_only_references(foreign, tmp_path):
    root, _, images = foreign
    models = tmp_path / "models"
    md = ("--models-dir", str(models))
    assert "registered cats" in _ok(run_cli("models", "add", "cats", str(root / "dif"), *md))
    ref = json.loads((models / "cats" / "reference.json").read_text())
    ref["solver_grids"] = {"unipc:3": {}}  # as `tune-solver` leaves it
    (models / "cats" / "reference.json").write_text(json.dumps(ref))
    out = _ok(run_cli("models", "remove", "cats", *md))
    assert "unregistered cats and its tuned solves" in out and "left as it is" in out
    assert not (models / "cats").exists() and (root / "dif" / "unet").is_dir()  # the model's own files stay
    assert "cats" not in _ok(run_cli("models", *md))
    _one_line_error(run_cli("sample", "--domain", "cats", "-n", "1", *md), "no trained model for domain 'cats'")
    _one_line_error(run_cli("models", "remove", "cats", *md), "no model is registered as 'cats'", "registered: none")
    _one_line_error(run_cli("models", "remove", "sevens", *md), "bundled with ddib")
    _one_line_error(run_cli("models", "remove", "../dif", *md), "invalid domain name")
    trained = models / "own"
    trained.mkdir()
    (trained / "model.safetensors").write_bytes(b"weights")
    _one_line_error(run_cli("models", "remove", "own", *md), "not a registered reference", "delete the folder yourself")
    assert (trained / "model.safetensors").read_bytes() == b"weights"


def test_models_lists_from_configs_without_reading_weights_and_says_why_one_is_unusable(tmp_path):
    models = tmp_path / "models"
    md = ("--models-dir", str(models))
    cond = save_pipeline(tmp_path / "cond", unet=tiny_unet(num_class_embeds=4))
    broken, gone = save_pipeline(tmp_path / "broken"), save_pipeline(tmp_path / "gone")
    for name, path, extra in (("cond2", cond, ["--label", "2"]), ("broken", broken, []), ("gone", gone, [])):
        _ok(run_cli("models", "add", name, str(path), *extra, *md))
    shutil.rmtree(gone)
    with pytest.raises(DDIBError, match=r"has 4 classes \(0 to 3\): no label 9"):
        ddib.load(f"{cond}:9")
    (broken / "scheduler" / "scheduler_config.json").unlink()
    weights = cond / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a listing reads configs only; a solve reads the weights
    out = " ".join(_ok(run_cli("models", *md)).split())
    assert f"cond2 │ local │ diffusers {SIZE}×{SIZE}, 3 channels, label 2 of 4 classes │ linear β × 1000, ε" in out
    assert "broken │ local │ diffusers, unusable:" in out and "no scheduler config" in out
    assert "gone │ local │ diffusers, unusable:" in out and "it does not exist" in out
    r = run_cli("sample", "--domain", "cond2", "-n", "1", "--steps", "2", *md)
    _one_line_error(r, "cannot build its UNet2DModel")


def test_a_diffusers_folder_without_the_extra_names_it(tmp_path):
    folder = save_pipeline(tmp_path / "dif")
    blocker = tmp_path / "blocked" / "diffusers"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('diffusers is not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker.parent), str(REPO)])}
    for args in (("sample", "--domain", str(folder), "-n", "1"), ("models", "add", "x", str(folder))):
        _one_line_error(run_cli(*args, "--models-dir", str(tmp_path / "models"), env=env),
                        "diffusers folders need the diffusers package: pip install 'ddib[diffusers]'")  # fmt: skip
