"""`ddib translate` / `ddib decode` end to end with tiny models."""

from pathlib import Path

import safetensors.torch
from PIL import Image

from .conftest import make_blob_images, run_cli
from .test_cli import _one_line_error


def test_translate_files_folder_grid_and_latents(tmp_path, tiny_models):
    src = make_blob_images(tmp_path / "in", 3, (230, 30, 30), seed=9)
    r = run_cli(
        "translate",
        str(src),
        "--from",
        "reds",
        "--to",
        "blues",
        "--models-dir",
        str(tiny_models),
        "--grid",
        str(tmp_path / "grid.png"),
        "--save-latent",
        str(tmp_path / "z.safetensors"),
        "--steps",
        "4",
    )
    assert r.returncode == 0, r.stderr
    outs = sorted((tmp_path / "in-to-blues").glob("*.png"))
    assert [p.name for p in outs] == ["img000.png", "img001.png", "img002.png"]
    assert Image.open(outs[0]).size == (16, 16)
    assert "translated 3 images reds" in r.stdout and "8 NFE per image" in r.stdout  # unipc: one NFE per step
    assert "images/s" in r.stdout
    assert Image.open(tmp_path / "grid.png").size[0] > 2 * 16 * 3
    z = safetensors.torch.load_file(str(tmp_path / "z.safetensors"))["latent"]
    assert z.shape == (3, 3, 16, 16)

    r = run_cli(
        "decode",
        str(tmp_path / "z.safetensors"),
        "--to",
        "blues",
        "--models-dir",
        str(tiny_models),
        "--out-dir",
        str(tmp_path / "dec"),
        "--steps",
        "4",
    )
    assert r.returncode == 0, r.stderr
    decoded = sorted((tmp_path / "dec").glob("*.png"))
    assert len(decoded) == 3
    assert Image.open(decoded[0]).tobytes() == Image.open(outs[0]).tobytes()  # same latent, same decoder

    one = src / "img000.png"
    r = run_cli(
        "translate", str(one), "--from", "reds", "--to", "blues", "--models-dir", str(tiny_models), "--steps", "4"
    )
    assert r.returncode == 0 and (src / "img000-to-blues.png").exists()  # default output next to the input


def test_source_is_the_only_other_domain(tmp_path):
    # An empty models dir leaves the bundled fives and sevens: --to sevens can only come from fives.
    img = tmp_path / "five.png"
    Image.new("RGB", (28, 28), (200, 0, 0)).save(img)
    r = run_cli("translate", str(img), "--to", "sevens", "--models-dir", str(tmp_path / "none"), "--steps", "1")
    assert r.returncode == 0, r.stderr
    assert "using fives, the only other trained domain" in r.stdout
    assert (tmp_path / "five-to-sevens.png").exists()


def test_translate_is_deterministic_and_accepts_any_image(tmp_path, tiny_models):
    img = tmp_path / "big.jpg"
    Image.new("RGBA", (50, 30), (200, 10, 10, 255)).convert("RGB").save(img)
    outs = []
    for name in ("a.png", "b.png"):
        r = run_cli(
            "translate",
            str(img),
            "--from",
            "reds",
            "--to",
            "blues",
            "--models-dir",
            str(tiny_models),
            "--out",
            str(tmp_path / name),
            "--steps",
            "3",
        )
        assert r.returncode == 0, r.stderr
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]
    assert "translated 1 image reds" in r.stdout
    r = run_cli("translate", str(img), "--from", "reds", "--to", "blues", "--models-dir", str(tiny_models),
                "--out", str(tmp_path / "c.png"), "--steps", "3", "--rho", "7")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "EDM ρ=7 grid" in r.stdout and (tmp_path / "c.png").read_bytes() != outs[0]


def test_translate_errors(tmp_path, tiny_models):
    src = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=9) / "img000.png"
    m = str(tiny_models)
    _one_line_error(
        run_cli("translate", str(src), "--to", "greens", "--from", "reds", "--models-dir", m),
        "no trained model",
    )
    _one_line_error(
        run_cli("translate", str(src), "--to", "blues", "--from", "reds", "--models-dir", m, "--out", str(src)),
        "is an input",
    )
    # images are written as PNG: another name is refused before any solve, not filled with PNG data
    _one_line_error(run_cli("translate", str(src), "--to", "blues", "--from", "reds", "--models-dir", m,
                            "--grid", str(tmp_path / "g.jpg")), "--grid", "g.jpg must be a .png file")  # fmt: skip
    _one_line_error(run_cli("sample", "--domain", "blues", "--models-dir", m, "--out", str(tmp_path / "s.jpg")),
                    "--out", "s.jpg must be a .png file")  # fmt: skip
    assert not list(tmp_path.glob("*.jpg"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    _one_line_error(
        run_cli("translate", str(bad), "--to", "blues", "--from", "reds", "--models-dir", m),
        "1 of 1 images cannot be read",
    )
    _one_line_error(
        run_cli("translate", str(tmp_path / "missing.png"), "--from", "reds", "--to", "blues", "--models-dir", m),
        "not found",
    )
    only = run_cli("translate", str(src), "--to", "blues", "--models-dir", m, "--steps", "1",
                   "--out", str(tmp_path / "only.png"))  # fmt: skip
    assert only.returncode == 0 and "using reds, the only other trained domain of this shape" in only.stdout


def test_source_is_inferred_by_likelihood_and_refused_when_undecided(tmp_path, tiny_models):
    models = tmp_path / "models"
    for src, dst in (("reds", "reds"), ("blues", "blues"), ("blues", "bluecopy")):
        _copy_as(tiny_models / src, models / dst)
    red = make_blob_images(tmp_path / "in", 3, (230, 30, 30), seed=5)
    m = str(models)
    r = run_cli("translate", str(red), "--to", "bluecopy", "--models-dir", m, "--steps", "1", "--out-dir",
                str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "--from inferred from 3 input(s) by band bits/dim: reds" in r.stdout and "using reds (margin" in r.stdout
    ode = run_cli("classify", str(red), "--models-dir", m, "--domain", "reds", "--domain", "blues", "--method", "ode",
                  "--probes", "2")  # fmt: skip
    assert ode.returncode == 0, ode.stderr
    assert ode.stdout.count(": reds; margin") == 3  # every red blob is decisively a red under the exact likelihood
    _copy_as(tiny_models / "reds", models / "redcopy")  # two identical candidates: no margin at all
    _one_line_error(run_cli("translate", str(red), "--to", "blues", "--models-dir", m, "--steps", "1"),
                    "cannot tell the source domain")  # fmt: skip
    _one_line_error(run_cli("translate", "--to", "blues", "--models-dir", m), "inferred from input images only")


def test_a_second_model_of_the_same_data_is_named_not_inferred(tmp_path, tiny_models):
    import shutil

    models = tmp_path / "models"
    for name in ("reds", "blues"):
        shutil.copytree(tiny_models / name, models / name)
    shutil.copytree(tiny_models / "reds", models / "reds-alt")  # its config still says it learned reds
    red = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=5)
    r = run_cli("translate", str(red), "--to", "blues", "--models-dir", str(models), "--steps", "1", "--out-dir",
                str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 0 and "using reds, the only other trained domain of this shape" in r.stdout, r.stderr
    r = run_cli("translate", str(red), "--from", "reds-alt", "--to", "blues", "--models-dir", str(models), "--steps",
                "1", "--out-dir", str(tmp_path / "o2"))  # fmt: skip
    assert r.returncode == 0 and "reds-alt" in r.stdout, r.stderr


def _copy_as(src: Path, dst: Path) -> None:
    """A copy of a trained model that calls its data `dst.name`: a domain of its own, not a second model of src's."""
    import json
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["domain"]["name"] = dst.name
    (dst / "config.json").write_text(json.dumps(config))


def test_mismatched_models_are_refused(tmp_path, tiny_models):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_models / "reds", models / "reds")
    data = make_blob_images(tmp_path / "big", 4, (0, 200, 0), seed=1, size=32)
    r = run_cli(
        "train",
        "--domain",
        "greens",
        "--data",
        str(data),
        "--models-dir",
        str(models),
        "--model-size",
        "tiny",
        "--image-size",
        "32",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--sample-every",
        "0",
    )
    assert r.returncode == 0, r.stderr
    src = data / "img000.png"
    _one_line_error(
        run_cli("translate", str(src), "--from", "greens", "--to", "reds", "--models-dir", str(models)),
        "incompatible",
    )


def test_symmetry_override_at_inference(tmp_path, tiny_models):
    src = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=3)
    common = ["translate", str(src / "img000.png"), "--from", "reds", "--to", "blues", "--models-dir",
              str(tiny_models), "--steps", "3"]  # fmt: skip
    plain = run_cli(*common, "--out", str(tmp_path / "plain.png"))
    averaged = run_cli(*common, "--out", str(tmp_path / "avg.png"), "--symmetry", "rgb-cyclic")
    assert plain.returncode == 0 and averaged.returncode == 0, averaged.stderr
    assert "network passes" not in plain.stdout
    assert "6 NFE per image (ε̂ averaged over rgb-cyclic: 3 network passes per NFE)" in averaged.stdout
    # reds and blues are not colour-symmetric domains, so averaging changes the result
    assert Image.open(tmp_path / "plain.png").tobytes() != Image.open(tmp_path / "avg.png").tobytes()
    _one_line_error(run_cli(*common, "--out", str(tmp_path / "x.png"), "--symmetry", "auto-ish"), "unknown symmetry")
    assert not (tmp_path / "x.png").exists()
