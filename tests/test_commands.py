"""demo, evaluate, bench, export, models: end to end on tiny or bundled models."""

import csv
import json
import re

from PIL import Image

from .conftest import REPO, make_blob_images, mnist_dir, needs_mnist, run_cli
from .test_cli import _one_line_error


def test_demo_runs_on_bundled_models_without_dataset(tmp_path):
    r = run_cli("demo", "-n", "2", "--steps", "2", "--out", str(tmp_path / "demo.png"), cwd=tmp_path,
                env={"DDIB_DATA_DIR": str(tmp_path / "none")})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "bundled" in r.stdout and "NFE per image" in r.stdout
    assert re.search(r"hue error per pair: \d+\.\d°, \d+\.\d° \(median \d+\.\d°\)", r.stdout), r.stdout
    assert Image.open(tmp_path / "demo.png").size[1] > 2 * 32


def test_models_lists_bundled(tmp_path):
    r = run_cli("models", cwd=tmp_path)
    assert r.returncode == 0 and "fives" in r.stdout and "sevens" in r.stdout and "bundled" in r.stdout


def test_export_round_trip(tmp_path, tiny_models):
    out = tmp_path / "shipped" / "reds"
    r = run_cli("export", "--domain", "reds", "--models-dir", str(tiny_models), "--out", str(out), "--fp16")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "model.safetensors").stat().st_size < (tiny_models / "reds" / "model.safetensors").stat().st_size
    r = run_cli("sample", "--domain", "reds", "-n", "2", "--models-dir", str(tmp_path / "shipped"),
                "--out", str(tmp_path / "s.png"), "--steps", "2")  # fmt: skip
    assert r.returncode == 0 and "local" in r.stdout
    kept = json.loads((tiny_models / "reds" / "config.json").read_text())["diffusion"]
    assert json.loads((out / "config.json").read_text())["diffusion"] == kept  # --symmetry keep: unchanged


def test_export_sets_the_copys_symmetry(tmp_path, tiny_models):
    out = tmp_path / "shipped" / "reds"
    r = run_cli("export", "--domain", "reds", "--models-dir", str(tiny_models), "--out", str(out),
                "--symmetry", "rgb-all")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "symmetry rgb-all" in r.stdout
    assert json.loads((out / "config.json").read_text())["diffusion"]["symmetry"] == "rgb-all"
    source = json.loads((tiny_models / "reds" / "config.json").read_text())
    assert source["diffusion"].get("symmetry", "none") != "rgb-all"  # the trained model's own config is untouched
    bad = tmp_path / "bad"
    _one_line_error(run_cli("export", "--domain", "reds", "--models-dir", str(tiny_models), "--out", str(bad),
                            "--symmetry", "rgb-some"), "unknown symmetry")  # fmt: skip
    assert not bad.exists()


def test_a_run_without_weights_shadows_the_bundled_model_and_exports_its_ema(tmp_path, tiny_models):
    import shutil

    from safetensors.torch import load_file

    run = tmp_path / "m" / "fives"  # the bundled name: the weightless local run must not fall back to it
    shutil.copytree(tiny_models / "reds", run)
    (run / "model.safetensors").unlink()
    sample = ["sample", "--domain", "fives", "-n", "1", "--steps", "2", "--out", str(tmp_path / "s.png")]
    _one_line_error(run_cli(*sample, "--models-dir", str(tmp_path / "m")), "is a training run without saved weights")
    assert not (tmp_path / "s.png").exists()
    listed = run_cli("models", "--models-dir", str(tmp_path / "m"))
    assert listed.returncode == 0 and "without saved weights" in listed.stdout and "sevens" in listed.stdout
    assert not re.search(r"fives\s.*bundled", listed.stdout)
    r = run_cli("export", "--domain", "fives", "--models-dir", str(tmp_path / "m"), "--out", str(tmp_path / "x" / "f"))
    assert r.returncode == 0 and "(training state, step 30," in r.stdout, r.stderr
    exported, original = (
        load_file(tmp_path / "x" / "f" / "model.safetensors"),
        load_file(tiny_models / "reds" / "model.safetensors"),
    )
    assert exported.keys() == original.keys() and all((exported[k] == original[k]).all() for k in original)
    assert run_cli(*sample, "--models-dir", str(tmp_path / "x")).returncode == 0


@needs_mnist
def test_evaluate_reports_every_metric(tmp_path):
    r = run_cli("evaluate", "-n", "4", "--steps", "2", "--json", str(tmp_path / "e.json"), "--data-dir", mnist_dir(),
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["n"] == 4 and rep["nfe_per_image"] == 4  # 2 unipc steps each way
    for key in ("target_accuracy", "source_share", "cycle_rmse", "cycle_source_accuracy", "frechet_distance"):
        assert rep[key] is not None
    assert 0 <= rep["hue_error_median"] <= 180
    assert "read as target digit" in r.stdout


@needs_mnist
def test_evaluate_measures_the_same_domain_floor_between_two_models_of_one_domain(tmp_path):
    import shutil

    bundled = REPO / "ddib" / "assets" / "models" / "fives"
    shutil.copytree(bundled, tmp_path / "b" / "fives")
    r = run_cli("evaluate", "--from", str(bundled), "--to", str(tmp_path / "b" / "fives"), "-n", "4", "--steps", "4",
                "--no-cycle", "--json", str(tmp_path / "e.json"), "--data-dir", mnist_dir())  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["source"] == rep["target"] == "fives" and rep["target_accuracy"] is not None
    assert rep["source_model"] == str(bundled) and rep["target_model"] == str(tmp_path / "b" / "fives")
    assert rep["hue_error_median"] < 10  # the same weights at both ends: the translation is a round trip
    _one_line_error(run_cli("evaluate", "--from", str(bundled), "--to", str(bundled / ".." / "fives")),
                    "the same model")  # fmt: skip
    _one_line_error(run_cli("evaluate", "--from", str(bundled), "--to", str(tmp_path / "none" / "fives")),
                    "is not a model directory")  # fmt: skip


def test_bench_translate_quick(tmp_path, tiny_models):
    inputs = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=4)
    r = run_cli("bench", "translate", "--quick", "--from", "reds", "--to", "blues", "--inputs", str(inputs),
                "--models-dir", str(tiny_models), "--out-dir", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "translate-cpu.md").read_text()
    assert "| ddim | 20 | uniform t | 20 | 20 |" in md and "dopri5" in md and "no classifier" in md
    assert "levels RMS" in md and "from the same solve at dopri5 (rtol=0.01, atol=0.01)" in md  # reference check
    rows = _csv_rows(tmp_path / "translate-cpu.csv")
    assert len(rows) == 3
    assert all(float(r["cycle_rms"]) > 0 and 0 <= float(r["hue_error_median"]) <= 180 for r in rows)
    assert all(r["target_accuracy"] == r["frechet_distance"] == "" for r in rows)  # no digit domain, no classifier


def test_bench_translate_solvers_keeps_only_their_rows(tmp_path, tiny_models):
    inputs = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=4)
    args = ("bench", "translate", "--quick", "--from", "reds", "--to", "blues", "--inputs", str(inputs),
            "--models-dir", str(tiny_models), "--out-dir", str(tmp_path))  # fmt: skip
    r = run_cli(*args, "--solvers", "heun2")
    assert r.returncode == 0, r.stderr
    assert [row["solver"] for row in _csv_rows(tmp_path / "translate-cpu.csv")] == ["heun2"]
    bad = run_cli(*args, "--solvers", "heun2,rk5")
    assert bad.returncode != 0 and "unknown solver 'rk5'" in bad.stderr and "Traceback" not in bad.stderr
    _one_line_error(run_cli(*args, "--reference", "dopri5:tight"), "give SOLVER:STEPS")
    r = run_cli(*args, "--solvers", "heun2", "--reference", "unipc:8")
    assert r.returncode == 0, r.stderr
    assert "Reference: unipc × 8 steps, " in (tmp_path / "translate-cpu.md").read_text()


@needs_mnist
def test_bench_translate_scores_every_budget_on_digits(tmp_path):
    r = run_cli("bench", "translate", "--quick", "-n", "3", "--data-dir", mnist_dir(), "--out-dir", str(tmp_path),
                cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "translate-cpu.md").read_text()
    assert "3 real sevens score" in md and "frechet_distance" in md and "cycle_source_accuracy" in md
    for row in _csv_rows(tmp_path / "translate-cpu.csv"):
        assert float(row["frechet_distance"]) > 0 and float(row["cycle_rms"]) > 0
        for share in ("target_accuracy", "source_share", "cycle_source_accuracy"):
            assert 0 <= float(row[share]) <= 1


def test_bench_train_quick(tmp_path):
    r = run_cli("bench", "train", "--sizes", "tiny", "--iters", "1", "--batch-size", "4", "--out-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "| tiny |" in (tmp_path / "train-cpu.md").read_text()
    _one_line_error(run_cli("bench", "train", "--sizes", "huge", "--out-dir", str(tmp_path)), "unknown model size")


def test_evaluate_folder_domains_reports_what_applies(tmp_path, tiny_models):
    inputs = make_blob_images(tmp_path / "in", 3, (230, 30, 30), seed=4)
    r = run_cli("evaluate", "--from", "reds", "--to", "blues", "--inputs", str(inputs), "--models-dir",
                str(tiny_models), "--steps", "2", "--json", str(tmp_path / "e.json"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "no classifier reads it" in r.stdout
    rep = json.loads((tmp_path / "e.json").read_text())
    assert rep["n"] == 3 and rep["target_accuracy"] is None and rep["frechet_distance"] is None
    assert rep["cycle_rmse"] is not None and rep["hue_error_median"] is not None
    assert "decodes" not in rep["solver"]
    r = run_cli("evaluate", "--from", "reds", "--to", "blues", "--inputs", str(inputs), "--models-dir",
                str(tiny_models), "--steps", "2", "--fp16", "--json", str(tmp_path / "f.json"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "f.json").read_text())["solver"].endswith(", fp16 decodes")


def test_likelihood_reports_bits_per_dim_under_each_model(tmp_path, tiny_models):
    red = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=6)
    for method in ("ode", "elbo"):
        out = tmp_path / f"{method}.json"
        r = run_cli("likelihood", str(red), "--models-dir", str(tiny_models), "--domain", "reds", "--domain", "blues",
                    "--method", method, "--probes", "2", "--levels", "8", "--json", str(out))  # fmt: skip
        assert r.returncode == 0, r.stderr
        rep = json.loads(out.read_text())
        assert rep["method"] == method and len(rep["results"]) == 2
        for rec in rep["results"]:
            (red_bpd, red_err), (blue_bpd, _) = rec["reds"], rec["blues"]
            assert 0 < red_bpd < blue_bpd and red_err > 0  # a red blob is likelier under the reds model
    for method in ("guess", "band"):  # band ranks models but is not a likelihood
        bad = run_cli("likelihood", str(red), "--models-dir", str(tiny_models), "--method", method)
        assert bad.returncode != 0 and f"unknown method '{method}'; choose from elbo, ode" in bad.stderr
        assert "Traceback" not in bad.stderr
    bad = run_cli("likelihood", str(red), "--models-dir", str(tiny_models), "--tol", "-1")  # once ran as if positive
    assert bad.returncode == 1 and "--tol must be positive, got -1" in bad.stderr


@needs_mnist
def test_bench_identify_writes_rows_and_matrices(tmp_path):
    r = run_cli("bench", "identify", "-n", "2", "--settings", "elbo:2", "--data-dir", mnist_dir(),
                "--out-dir", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "| elbo | levels 2 | 2 |" in (tmp_path / "identify-cpu.md").read_text()
    matrices = (tmp_path / "identify-matrices-cpu.md").read_text()
    assert "| images ↓ model → | fives | sevens |" in matrices and "ranked first" in matrices
    _one_line_error(run_cli("bench", "identify", "--domains", "fives", "--out-dir", str(tmp_path)), "two or more")


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bench_throughput_writes_a_row_per_batch_size_and_names_the_network_passes(tmp_path, tiny_models):
    args = ["bench", "throughput", "--from", "reds", "--to", "blues", "--models-dir", str(tiny_models),
            "--batch-sizes", "1,3", "--steps", "2"]  # fmt: skip
    for symmetry, passes in (("none", "1 network pass per NFE"), ("rgb-cyclic", "3 network passes per NFE")):
        out = tmp_path / symmetry
        r = run_cli(*args, "--symmetry", symmetry, "--out-dir", str(out))
        assert r.returncode == 0, r.stderr
        rows = _csv_rows(out / "throughput-cpu.csv")
        assert [row["batch_size"] for row in rows] == ["1", "3"] and all(float(r["images_per_s"]) > 0 for r in rows)
        assert passes in (out / "throughput-cpu.md").read_text()
    r = run_cli(*args, "--kernels", "eager", "--out-dir", str(tmp_path / "eager"))
    assert r.returncode == 0, r.stderr
    assert "kernels fp32 eager" in (tmp_path / "eager" / "throughput-cpu.md").read_text()
