"""`ddib bench quality` (the table, its resumption, --save-presets), `--quality` on the commands and in the API,
and `bench throughput --presets --baseline`: end to end on the tiny models."""

import csv
import json
import shutil

import torch

import ddib
from ddib.bridge.grids import sigma_grid

from .conftest import make_blob_images, run_cli
from .test_cli import _one_line_error

PRESETS = {"fast": {"steps": 2, "tuned": False}, "default": {"steps": 3, "tuned": False},
           "exact": {"steps": 5, "tuned": False}}  # fmt: skip


def _copy(tiny_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    return models


def _edit_configs(models, change):
    for name in ("reds", "blues"):
        path = models / name / "config.json"
        raw = json.loads(path.read_text())
        change(raw, name)
        path.write_text(json.dumps(raw))


def _learn(models, steps: int, shift: float, both_ways: bool = True) -> None:
    """A learned entry at `steps` (reds' encode and blues' decode, and `both_ways` the reverse too): the log-SNR
    grid with its inner nodes moved by `shift` in log σ̄."""
    model = ddib.load(models / "reds").diffusion
    grid = sigma_grid(model, steps, float("inf")).log()
    grid[1:-1] += shift
    nodes = grid.exp().tolist()

    def learn(raw, name):
        own = "encode" if name == "reds" else "decode"
        entry = {"encode": nodes, "decode": nodes} if both_ways else {own: nodes}
        raw.setdefault("solver_grids", {})[f"unipc:{steps}"] = entry

    _edit_configs(models, learn)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_bench_quality_writes_its_table_and_resumes_row_by_row(tmp_path, tiny_models):
    models = _copy(tiny_models, tmp_path)
    inputs = make_blob_images(tmp_path / "in", 3, (230, 30, 30), seed=4)
    out = tmp_path / "out"
    args = ["bench", "quality", "--from", "reds", "--to", "blues", "--inputs", str(inputs), "--models-dir",
            str(models), "-n", "3", "--reference", "unipc:6", "--resamples", "20", "--out-dir", str(out)]  # fmt: skip
    r = run_cli(*args, "--steps-list", "2,3")
    assert r.returncode == 0, r.stderr
    md = (out / "quality-cpu.md").read_text()
    assert md.startswith("`ddib bench quality --from reds --to blues -n 3 --inputs ")
    assert "| unipc × 3, learned | missing: no learned encode of reds for unipc × 3 |" in md
    assert "Presets: **fast**" in md and (out / "quality-cpu.png").is_file()
    rows = _rows(out / "quality-cpu.csv")
    expected = [("reference", "6"), ("untuned", "2"), ("learned", "2"), ("untuned", "3"), ("learned", "3"),
                ("untuned", "20")]  # fmt: skip
    assert [(row["grid"], row["steps"]) for row in rows] == expected
    assert rows[-1]["today"] == "True" and float(rows[0]["median_image"]) == 0.0  # the models' default; reference
    measured = rows[1]
    assert float(measured["hue_error_median_low"]) <= float(measured["hue_error_median"])
    assert float(measured["hue_error_median"]) <= float(measured["hue_error_median_high"])
    first = {(r["grid"], r["steps"]): r for r in json.loads((out / "quality-cpu.json").read_text())["rows"]}

    _learn(models, 3, 0.05)
    r = run_cli(*args, "--steps-list", "2,3,4")
    assert r.returncode == 0, r.stderr
    assert "converged: unipc × 6 steps: read back" in r.stdout
    assert "unipc × 2, log-SNR uniform grid: read back" in r.stdout
    assert "unipc × 3, learned: read back" not in r.stdout and "unipc × 3, learned: missing" not in r.stdout
    assert "unipc × 4, log-SNR uniform grid: read back" not in r.stdout
    again = {(r["grid"], r["steps"]): r for r in json.loads((out / "quality-cpu.json").read_text())["rows"]}
    assert again[("untuned", 2)] == first[("untuned", 2)]
    assert again[("learned", 3)]["missing"] is None and again[("learned", 3)]["figures"]["cycle_rms"] is not None

    _learn(models, 3, -0.05, both_ways=False)  # a refit: the learned row is stale, the others are not
    r = run_cli(*args, "--steps-list", "3")
    assert r.returncode == 0, r.stderr
    assert "unipc × 3, log-SNR uniform grid: read back" in r.stdout
    assert "unipc × 3, learned (back: log-SNR uniform grid): the translation back has no learned encode of blues" \
        in r.stdout  # fmt: skip
    assert "unipc × 3, learned (back: log-SNR uniform grid): read back" not in r.stdout


def test_presets_are_saved_resolved_named_and_overridden(tmp_path, tiny_models):
    models = _copy(tiny_models, tmp_path)
    inputs = make_blob_images(tmp_path / "in", 2, (230, 30, 30), seed=4)
    _one_line_error(run_cli("translate", str(inputs), "--from", "reds", "--to", "blues", "--models-dir", str(models),
                            "--out-dir", str(tmp_path / "t"), "--quality", "fast"),
                    "no fast preset for unipc", "ddib bench quality")  # fmt: skip
    _one_line_error(run_cli("bench", "quality", "--save-presets", "--out-dir", str(tmp_path / "b")),
                    "fives is a bundled model", "ddib export")  # fmt: skip

    r = run_cli("bench", "quality", "--from", "reds", "--to", "blues", "--inputs", str(inputs), "--models-dir",
                str(models), "-n", "2", "--steps-list", "2", "--grids", "untuned", "--reference", "unipc:4",
                "--resamples", "10", "--out-dir", str(tmp_path / "q"), "--save-presets")  # fmt: skip
    assert r.returncode == 0, r.stderr
    chosen = json.loads((tmp_path / "q" / "quality-cpu.json").read_text())["presets"]
    for name in ("reds", "blues"):
        stored = json.loads((models / name / "config.json").read_text())["quality"]["unipc"]
        assert stored["bridge"] == "reds → blues" and stored["images"] == 2 and stored["why"]
        assert {k: stored.get(k) for k in chosen} == chosen and stored["default"] is not None

    _edit_configs(models, lambda raw, _: raw["quality"].update({"unipc": PRESETS}))
    translate = ["translate", str(inputs), "--from", "reds", "--to", "blues", "--models-dir", str(models),
                 "--out-dir", str(tmp_path / "t")]  # fmt: skip
    for extra, says in ((["--quality", "fast"], "unipc × 2 steps (fast preset): 4 NFE per image"),
                        ([], "unipc × 3 steps (default preset): 6 NFE per image"),
                        (["--quality", "exact", "--steps", "4"], "unipc × 4 steps: 8 NFE per image")):  # fmt: skip
        r = run_cli(*translate, *extra)
        assert r.returncode == 0 and says in r.stdout, (r.stdout, r.stderr)
    r = run_cli("sample", "--domain", "reds", "-n", "1", "--models-dir", str(models), "--out", str(tmp_path / "s.png"),
                "--quality", "exact")  # fmt: skip
    assert r.returncode == 0 and "unipc × 5 steps (exact preset)" in r.stdout, r.stderr

    reds, blues = ddib.load(models / "reds"), ddib.load(models / "blues")
    x = ddib.sample(reds, 2, seed=1, steps=2)
    fast = ddib.translate(x, reds, blues, quality="fast")
    assert torch.equal(fast, ddib.translate(x, reds, blues, steps=2, tuned=False))
    assert not torch.equal(fast, ddib.translate(x, reds, blues))  # the default preset: 3 steps

    out = tmp_path / "speed"
    r = run_cli("bench", "throughput", "--pair", "reds,blues", "--presets", "--baseline", "unipc:4", "--models-dir",
                str(models), "--batch-sizes", "1", "--out-dir", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = _rows(out / "throughput-cpu.csv")
    solves = ["baseline: unipc × 4 steps", "unipc × 2 steps (fast preset)", "unipc × 3 steps (default preset)",
              "unipc × 5 steps (exact preset)"]  # fmt: skip
    assert [row["solve"] for row in rows] == solves
    assert float(rows[0]["vs_baseline"]) == 1.0 and [row["nfe_per_image"] for row in rows] == ["8", "4", "6", "10"]
    assert all(float(row["vs_baseline"]) > 0 for row in rows)
