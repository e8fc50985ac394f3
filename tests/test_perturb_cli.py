"""`ddib perturb` end to end with tiny models, the experiment runner in process, and its one-line errors.

One test runs the command in a subprocess (the real entry point); the others call the same entry point,
`ddib.cli.main`, in process, which spares a Python + torch start-up each.
"""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from ddib.bridge.ode import ODEOptions
from ddib.errors import DDIBError
from ddib.model.registry import load_domain_model
from ddib.perturb.latent_ops import Perturbation
from ddib.perturb.report import figure
from ddib.perturb.runner import REPORT_PRESET, ExperimentSpec, PerturbRunner

from .conftest import make_blob_images, run_cli
from .test_cli import _one_line_error

ROW_PX = 2 * (16 + 2 * 2)  # labelled_grid: 16-px images, 2-px padding, drawn at scale 2
# Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads contend badly.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run `ddib ARGS` in process from tmp_path; returns returncode, stdout, stderr like run_cli."""
    from ddib.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DDIB_MODELS_DIR", raising=False)
    monkeypatch.setenv("DDIB_DATA_DIR", str(tmp_path / "no-data"))

    def run(*args: str) -> SimpleNamespace:
        capsys.readouterr()
        rc = main(list(args))
        cap = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=cap.out, stderr=cap.err)

    return run


def test_perturb_sweep_writes_figure_and_json(tmp_path, tiny_models):
    images = make_blob_images(tmp_path / "in", 3, (230, 30, 30), seed=5)
    out, numbers = tmp_path / "fig.png", tmp_path / "n.json"
    r = run_cli("perturb", str(images), "--from", "reds", "--to", "blues", "--op", "checkerboard",
                "--coef", "0.1,0.5,1", "--with", "noise", "--steps", "2", "--models-dir", str(tiny_models),
                "--out", str(out), "--json", str(numbers), env=ONE_THREAD)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "3 input images" in r.stdout and "KS vs N(0,1)" in r.stdout and "encoded 3 inputs once" in r.stdout
    data = json.loads(numbers.read_text())
    assert data["coefs"] == [0.1, 0.5, 1.0] and data["n"] == 3
    assert [row["coef"] for row in data["rows"]] == [0.1, 0.5, 1.0]  # one row per coefficient
    assert all(row["other"] == "noise" and row["ops"] == "checkerboard" for row in data["rows"])
    assert data["reference"]["target_share"] is None  # blues is not a digit domain: no classifier
    assert all(0 <= row["hue_error_median"] <= 180 for row in data["rows"])
    assert data["reference"]["coef"] is None and data["reference"]["ops"] == "none"
    img = Image.open(out)
    assert img.size[1] == (3 + 3) * ROW_PX  # inputs, latent, reference, one row per coefficient


def test_perturb_composed_plan_with_image_op_and_default_sweep(tmp_path, tiny_models, cli):
    images = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=6)
    r = cli("perturb", str(images), "--from", "reds", "--to", "blues", "--op", "blur-image",
                "--op", "rotate2x2", "--op", "blur=0.5", "--base", "normalized", "--steps", "1",
                "--models-dir", str(tiny_models), "--json", "n.json", "--bf16")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "perturb-blur-image-rotate2x2-blur.png"  # default name from the ops
    data = json.loads((tmp_path / "n.json").read_text())
    assert data["solver"].endswith(", bf16 decodes") and ", bf16 decodes" in r.stdout
    assert data["coefs"] == [0.5, 1.0, 1.5, 2.0]  # blur-image's default sweep
    assert data["plan"] == "blur-image then rotate2x2 then blur=0.5, normalized base"
    assert "encoded 8 perturbed inputs" in r.stdout
    # image-space ops add the perturbed input above each decoded row
    assert Image.open(out).size[1] == (3 + 2 * 4) * ROW_PX


def test_perturb_preset_report_with_tiny_models(tmp_path, tiny_models, cli):
    r = cli("perturb", "--preset", "report", "--from", "reds", "--to", "blues", "-n", "2", "--steps", "1",
                "--models-dir", str(tiny_models), "--out-dir", str(tmp_path / "figs"),
                "--data-dir", str(tmp_path / "no-data"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "sampled from the reds model" in r.stdout
    figs = tmp_path / "figs"
    pngs = sorted(p.name for p in figs.glob("*.png"))
    assert pngs == sorted(f"{s.slug()}.png" for s in REPORT_PRESET)
    rows = list(csv.DictReader((figs / "summary.csv").open()))
    assert len(rows) == 1 + sum(len(s.sweep()) for s in REPORT_PRESET)
    assert rows[0]["experiment"] == "reference" and {r["experiment"] for r in rows[1:]} >= {"3a", "7b", "8d"}
    summary = json.loads((figs / "summary.json").read_text())
    assert len(summary["experiments"]) == len(REPORT_PRESET)
    md = (figs / "summary.md").read_text()
    assert md.count("\n| ") == len(rows) + 1 and "KS vs N(0,1)" in md  # header + one line per row


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--op", "swirl"], ["unknown op 'swirl'", "valid ops: normalize, noise, blend, checkerboard, rotate2x2"]),
        (["--op", "checkerboard", "--coef", "0.3,1.5"], ["checkerboard c = 1.5 is out of range", "[0, 1]"]),
        (["--op", "blur", "--coef", "-1"], ["blur sigma = -1 is out of range"]),
        (["--op", "blend", "--coef", "0.1,x"], ["'x' is not a number"]),
        (["--op", "rotate2x2", "--coef", "0.5"], ["no op of rotate2x2 takes a coefficient"]),
        (["--op", "noise", "--op", "blur-image"], ["acts on the image before encoding"]),
        (["--op", "noise", "--base", "middle"], ["unknown base 'middle'"]),
        (["--preset", "report", "--op", "blur"], ["drop --op"]),
        (["--preset", "paper"], ["unknown preset 'paper'", "report"]),
        ([], ["name an op with --op"]),
    ],
)
def test_perturb_bad_input_is_one_line(cli, args, fragments):
    _one_line_error(cli("perturb", *args), *fragments)


def test_perturb_bad_input_is_one_line_in_a_subprocess(tmp_path):
    r = run_cli("perturb", "--op", "swirl", "--op", "blur", cwd=tmp_path, env=ONE_THREAD)
    _one_line_error(r, "unknown op 'swirl'", "valid ops: normalize, noise, blend, checkerboard, rotate2x2")


def test_runner_encodes_once_and_rejects_mismatched_shapes(tiny_models):
    src = load_domain_model("reds", tiny_models).diffusion
    tgt = load_domain_model("blues", tiny_models).diffusion
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runner = PerturbRunner(src, tgt, x, ODEOptions(steps=1))
    specs = [
        ExperimentSpec("a", "noise", "noise", Perturbation.of("noise"), (0.1, 0.3)),
        ExperimentSpec("b", "rot", "rot", Perturbation.of("rotate2x2")),
        ExperimentSpec("c", "blurimg", "blur image", Perturbation.of("blur-image"), (1.0,)),
    ]
    assert runner.work(specs) == 2 * 2 + 2 * 2 + 2 * 1 + 2 * 2
    results = [runner.run(s) for s in specs]
    assert runner.encode_stats.solves == 2  # the inputs once, plus one batched encode for the image op
    assert runner.decode_stats.solves == 1 + 3  # the reference, then one batched decode per experiment
    assert [len(r.rows) for r in results] == [2, 1, 1] and results[1].rows[0].coef is None
    assert results[0].outputs[0].shape == x.shape
    ref_images, ref_row = runner.reference
    sheet = figure(results[0], x, runner.latent.z, ref_images, title="noise")
    assert sheet.size[1] > 5 * ROW_PX
    with pytest.raises(DDIBError, match=r"inputs have shape \(2, 3, 8, 8\)"):
        PerturbRunner(src, tgt, torch.zeros(2, 3, 8, 8))
    with pytest.raises(DDIBError, match="differ"):
        Perturbation.of("blend").apply(runner.latent, x[:1], 0.5)
