"""2-D point domains: generators, point files, a tiny trained model, cycle consistency, and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ddib.bridge import ode
from ddib.bridge.points import cycle_consistency, load_point_model, sample_points, test_points, translate_points
from ddib.cli import main
from ddib.data import domain_source, load_point_domain
from ddib.data.points import POINT_DOMAINS, make_points, raw_points, standardize
from ddib.errors import DDIBError
from ddib.io.point_figures import position_colors, transport_figure
from ddib.io.points import read_points, write_points
from ddib.model import checkpoint as ckpt
from ddib.model.diffusion import Diffusion, DiffusionConfig
from ddib.model.nets import MLPConfig, build_network
from ddib.train.loop import TrainOptions, train

from .conftest import run_cli
from .test_cli import _one_line_error

TINY = MLPConfig(width=64, num_blocks=2)


# --- generators -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", POINT_DOMAINS)
def test_generators_are_standardised_seeded_and_shuffled(name):
    x, mean, std = make_points(name, 3000, seed=1)
    assert x.shape == (3000, 2) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(unbiased=False).item() - 1) < 1e-4  # one scalar over all
    raw = raw_points(name, 3000, seed=1)
    assert mean == pytest.approx(raw.mean()) and std == pytest.approx(raw.std())
    np.testing.assert_allclose(x.numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    again, _, _ = make_points(name, 3000, seed=1)
    assert torch.equal(x, again)
    assert not torch.equal(x, make_points(name, 3000, seed=2)[0])
    assert not np.allclose(raw, raw_points(name, 3000, seed=1, split="test"))  # an independent test split
    # Shuffled: the generators emit points object by object (ring 1 before ring 3, outer moon before inner),
    # so unshuffled the first and last points would differ in where they sit or how far out they are.
    first, last = raw[:300] - raw.mean(0), raw[-300:] - raw.mean(0)
    assert np.abs(first.mean(0) - last.mean(0)).max() < 0.3 * raw.std()
    assert abs(np.linalg.norm(first, axis=1).mean() - np.linalg.norm(last, axis=1).mean()) < 0.3 * raw.std()


def test_rings_and_squares_radii_cluster_at_1_2_3():
    rings = raw_points("rings", 3000, seed=0)
    r = np.hypot(rings[:, 0], rings[:, 1])
    nearest = np.clip(np.round(r), 1, 3)
    assert np.abs(r - nearest).max() <= 0.25 + 1e-9  # width 0.5
    assert np.abs(r - nearest).max() > 0.2  # ... and actually that wide
    assert [(nearest == k).sum() for k in (1, 2, 3)] == [1000, 1000, 1000]  # equal points per ring
    squares = raw_points("squares", 3000, seed=0)
    cheb = np.abs(squares).max(axis=1)  # half-side of the square a point lies on
    nearest = np.clip(np.round(cheb), 1, 3)
    assert np.abs(cheb - nearest).max() <= 0.25 + 1e-9
    assert [(nearest == k).sum() for k in (1, 2, 3)] == [1000, 1000, 1000]


def test_olympic_rings_and_squares_sit_around_their_centres():
    rings = raw_points("olympic-rings", 3000, seed=0)
    centres = np.array([[-2.8, 0.0], [0.0, 0.0], [2.8, 0.0]])  # (±140, 0) / 50
    d = np.abs(np.linalg.norm(rings[:, None] - centres[None], axis=2) - 1).min(axis=1)
    assert d.max() <= 0.25 + 1e-9
    squares = raw_points("olympic-squares", 3000, seed=0)
    centres = np.array([[-3.0, 0.0], [0.0, 0.0], [3.0, 0.0]])  # (±150, 0) / 50
    d = np.abs(np.abs(squares[:, None] - centres[None]).max(axis=2) - 1).min(axis=1)
    assert d.max() <= 0.25 + 1e-9


def test_checkerboard_points_lie_on_the_black_cells():
    x = raw_points("checkerboards", 4000, seed=0)
    assert x.min() >= -2 and x.max() < 2
    cells = np.floor(x).astype(int)
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    occupied = {tuple(c) for c in cells}
    assert len(occupied) == 8  # all eight black cells of the 4×4 board


def test_moons_are_two_noisy_arcs():
    x = torch.from_numpy(raw_points("moons", 4000, seed=0))
    t = torch.linspace(0, torch.pi, 2000, dtype=torch.float64)
    outer_arc = torch.stack([torch.cos(t), torch.sin(t)], 1)  # upper half of the unit circle
    inner_arc = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)  # lower half, centred at (1, 0.5)
    outer, inner = torch.cdist(x, outer_arc).min(1).values, torch.cdist(x, inner_arc).min(1).values
    assert (outer < inner).sum().item() == pytest.approx(2000, abs=40)  # half the points on each arc
    nearest = torch.minimum(outer, inner)
    assert nearest.max() < 0.25 and nearest.median() < 0.07  # N(0, 0.05²) noise per coordinate


def test_unknown_point_domain_and_bad_counts():
    with pytest.raises(DDIBError, match="unknown point domain"):
        raw_points("spirals", 10)
    with pytest.raises(DDIBError, match="positive integer"):
        make_points("moons", 0)
    with pytest.raises(DDIBError, match="zero spread"):
        standardize(np.ones((4, 2)))


# --- point files ------------------------------------------------------------------------------------------


def test_point_files_round_trip_and_reject_bad_input(tmp_path):
    pts = np.array([[0.5, -1.25], [3.0, 1e-3], [-2.0, 7.0]])
    for name in ("p.csv", "p.npy"):
        write_points(tmp_path / name, pts)
        np.testing.assert_allclose(read_points(tmp_path / name), pts, rtol=1e-8)
    (tmp_path / "h.csv").write_text("# comment\nx,y\n1,2\n\n3.5, 4\n")
    np.testing.assert_array_equal(read_points(tmp_path / "h.csv"), [[1, 2], [3.5, 4]])
    cases = {
        "three.csv": ("1,2,3\n", "expected 2 comma-separated columns"),
        "word.csv": ("1,2\n3,abc\n", "'abc' is not a number"),
        "empty.csv": ("x,y\n", "holds no points"),
        "nan.csv": ("1,2\nnan,1\n", "not finite"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DDIBError, match=message):
            read_points(tmp_path / name)
    np.save(tmp_path / "wide.npy", np.zeros((4, 3)))
    with pytest.raises(DDIBError, match="N×2"):
        read_points(tmp_path / "wide.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DDIBError, match="not a valid .npy"):
        read_points(tmp_path / "junk.npy")
    (tmp_path / "p.txt").write_text("1,2\n")
    with pytest.raises(DDIBError, match=".csv or .npy"):
        read_points(tmp_path / "p.txt")
    with pytest.raises(DDIBError, match="not found"):
        read_points(tmp_path / "missing.csv")
    with pytest.raises(DDIBError, match=".csv or .npy"):
        write_points(tmp_path / "out.txt", pts)


# --- a tiny trained model ---------------------------------------------------------------------------------


def _train_tiny(root: Path, name: str, steps: int = 300) -> Diffusion:
    source, data = load_point_domain(domain_source(name), 10_000, seed=0)
    cfg = ckpt.RunConfig(
        TINY,
        DiffusionConfig(),
        ckpt.TrainConfig(batch_size=256, lr=2e-3, warmup_steps=50, ema_decay=0.99),
        source.to_dict(),
    )
    return train(root / name, cfg, data, TrainOptions(steps=steps, save_every=10**9))


@pytest.fixture(scope="module")
def point_models(tmp_path_factory) -> Path:
    """A models dir with tiny `moons` and `checkerboards` point models (300 steps each, a few seconds)."""
    root = tmp_path_factory.mktemp("points") / "models"
    for name in ("moons", "checkerboards"):
        _train_tiny(root, name)
    return root


def _nearest_data_distance(x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, data).min(dim=1).values


def test_tiny_model_samples_land_on_the_moons(point_models):
    moons = load_point_model("moons", point_models)
    data, _, _ = make_points("moons", 10_000, seed=0)
    x = sample_points(moons.diffusion, 1000, seed=0)
    d = _nearest_data_distance(x, data)
    # Measured (2 threads): median 0.027, 90th percentile 0.32 (standardised units; data std = 1).
    assert d.median() < 0.1 and d.quantile(0.9) < 0.8
    torch.manual_seed(0)
    untrained = Diffusion(build_network(TINY)).eval()
    d0 = _nearest_data_distance(sample_points(untrained, 1000, seed=0), data)
    assert d0.median() > 1.0  # measured ≈ 100: the test can fail


def test_cycle_error_shrinks_with_more_solver_steps(point_models):
    moons, checker = load_point_model("moons", point_models), load_point_model("checkerboards", point_models)
    x = test_points(moons, 500, seed=0)
    coarse = cycle_consistency(moons.diffusion, checker.diffusion, x, ode.ODEOptions("ddim", steps=5))
    fine = cycle_consistency(moons.diffusion, checker.diffusion, x, ode.ODEOptions("ddim", steps=50))
    # Measured: mean 3.3 at 5 steps, 0.16 at 50 steps.
    assert fine.mean_l2 < 0.5 * coarse.mean_l2 and fine.mean_l2 < 0.5
    assert fine.nfe_per_point == 200 and coarse.nfe_per_point == 20 and fine.n == 500
    assert fine.max_l2 >= fine.median_l2 > 0


def test_translate_points_maps_raw_coordinates_in_and_out(point_models):
    moons, checker = load_point_model("moons", point_models), load_point_model("checkerboards", point_models)
    raw = raw_points("moons", 400, seed=3, split="test")
    opts = ode.ODEOptions("heun2", steps=10)
    result = translate_points(moons, checker, raw, opts, batch_size=150)
    assert result.output_raw.shape == (400, 2) and result.nfe_per_point == 40
    mean, std = checker.standardisation
    np.testing.assert_allclose(result.output_raw, result.output.double().numpy() * std + mean)
    np.testing.assert_allclose(result.latent, ode.encode(moons.diffusion, moons.to_model(raw), opts), atol=1e-4)
    # The batch size does not change the result beyond float noise.
    whole = translate_points(moons, checker, raw, opts, batch_size=None)
    np.testing.assert_allclose(whole.output_raw, result.output_raw, atol=1e-4)
    # Same network at both ends but other raw units at the target: the bridge is then (nearly) the identity in
    # model space, so raw moons come out as (raw − mean_src) / std_src · std_tgt + mean_tgt.
    domain = {**moons.config.domain, "mean": 10.0, "std": 3.0}
    rescaled = dataclasses.replace(moons, config=dataclasses.replace(moons.config, domain=domain))
    out = translate_points(moons, rescaled, raw, opts).output_raw
    expected = (raw - moons.standardisation[0]) / moons.standardisation[1] * 3.0 + 10.0
    assert np.median(np.abs(out - expected)) < 0.05 * 3.0  # round-trip error of the tiny model, in raw units
    assert np.abs(out.mean() - 10.0) < 1.0 and np.abs(raw.mean() - 10.0) > 9


def test_transport_figure_colours_by_source_position():
    x, _, _ = make_points("rings", 600, seed=0)
    colors = position_colors(x)
    assert colors.shape == (600, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) > 300  # a colour map, not one colour
    fig = transport_figure(x, torch.randn(600, 2), x, ("a", "b", "c"), "caption")
    assert fig.size[0] > 3 * fig.size[1] / 2


# --- command line -----------------------------------------------------------------------------------------


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (fast: no new interpreter); returns (exit code, stdout, stderr)."""
    rc = main(list(args))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _in_process_one_line_error(result, *fragments):
    rc, _, err = result
    _one_line_error(SimpleNamespace(returncode=rc, stderr=err), *fragments)


def test_cli_trains_a_point_domain(tmp_path, capsys):
    models = tmp_path / "m"
    args = ["train", "--domain", "rings", "--models-dir", str(models), "--width", "32", "--blocks", "1",
            "--n-points", "3000", "--batch-size", "128", "--sample-every", "20", "--log-every", "10"]  # fmt: skip
    r = run_cli(*args, "--steps", "20")
    assert r.returncode == 0, r.stderr
    assert "MLP width 32, 1 blocks" in r.stdout and "pts/s" in r.stdout and "step 20/20" in r.stdout
    cfg = json.loads((models / "rings" / "config.json").read_text())
    assert cfg["model"] == {"dim": 2, "width": 32, "num_blocks": 1, "time_scale": 1000.0, "num_classes": 0,
                            "kind": "mlp"}  # fmt: skip
    assert cfg["domain"]["kind"] == "points" and cfg["domain"]["n"] == 3000
    assert cfg["domain"]["std"] == pytest.approx(raw_points("rings", 3000, 0).std())
    assert cfg["train"]["batch_size"] == 128 and cfg["train"]["lr"] == 1e-3  # the point default
    assert Image.open(models / "rings" / "samples" / "step-000020.png").size[0] > 200  # a scatter plot
    # Resuming checks the settings, as for images (in this process: a second interpreter costs seconds).
    _in_process_one_line_error(_cli(capsys, *args, "--steps", "30", "--batch-size", "64"), "other settings")


def test_cli_sample_translate_plot_cycle(tmp_path, point_models, capsys):
    m = ["--models-dir", str(point_models)]
    rc, out, _ = _cli(capsys, "sample", "--domain", "moons", "-n", "300", "--out", str(tmp_path / "s.csv"), *m)
    assert rc == 0 and "20 NFE per point" in out
    pts = read_points(tmp_path / "s.csv")
    assert pts.shape == (300, 2) and -1.5 < np.median(pts[:, 0]) < 2.5  # raw moons coordinates
    rc, _, _ = _cli(capsys, "sample", "--domain", "moons", "-n", "300", "--out", str(tmp_path / "s.png"), *m)
    assert rc == 0 and Image.open(tmp_path / "s.png").size[0] > 200

    rc, out, err = _cli(capsys, "translate", str(tmp_path / "s.csv"), "--from", "moons", "--to", "checkerboards",
                        "--steps", "4", "--grid", str(tmp_path / "g.png"), *m)  # fmt: skip
    assert rc == 0, err
    assert "8 NFE per point" in out and "raw checkerboards coordinates" in out
    translated = read_points(tmp_path / "s-to-checkerboards.csv")  # default name next to the input
    assert translated.shape == (300, 2) and not np.allclose(translated, pts)
    assert Image.open(tmp_path / "g.png").size[0] > 600
    np.save(tmp_path / "s.npy", pts)
    rc, _, err = _cli(capsys, "translate", str(tmp_path / "s.npy"), "--from", "moons", "--to", "checkerboards",
                      "--steps", "4", "--out", str(tmp_path / "t.npy"), *m)  # fmt: skip
    assert rc == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), translated, atol=1e-5)

    rc, out, err = _cli(capsys, "plot", "--from", "moons", "--to", "checkerboards", "-n", "500", "--steps", "4",
                        "--out", str(tmp_path / "fig.png"), *m)  # fmt: skip
    assert rc == 0, err
    assert Image.open(tmp_path / "fig.png").size[0] > 3 * 300

    report = tmp_path / "c.json"
    rc, out, err = _cli(capsys, "cycle", "--from", "moons", "--to", "checkerboards", "-n", "300", "--solver", "ddim",
                        "--steps", "20", "--json", str(report), *m)  # fmt: skip
    assert rc == 0, err
    assert "standardised" in out and "mean" in out and "max" in out
    rep = json.loads(report.read_text())
    assert rep["n"] == 300 and rep["nfe_per_point"] == 80 and rep["solver"] == "ddim"
    assert 0 < rep["mean_l2"] <= rep["max_l2"] and rep["seconds"] > 0

    rc, out, err = _cli(capsys, "cycle-table", "-n", "50", "--fast-only", "--pairs", "moons:checkerboards",
                        "--out-dir", str(tmp_path / "bench"), *m)  # fmt: skip
    assert rc == 0, err
    md = (tmp_path / "bench" / "cycle-points.md").read_text()
    assert "| moons | checkerboards | unipc | 20 | 50 | 80 |" in md and "standardised" in md
    assert len((tmp_path / "bench" / "cycle-points.csv").read_text().splitlines()) == 2


def test_cli_point_errors_are_one_line(tmp_path, point_models, capsys):
    m = ["--models-dir", str(point_models)]
    (tmp_path / "three.csv").write_text("x,y,z\n1,2,3\n")
    (tmp_path / "ok.csv").write_text("0,0\n1,1\n")
    cases = [
        (["translate", str(tmp_path / "three.csv"), "--from", "moons", "--to", "checkerboards"],
         ["line 1", "expected 2 comma-separated columns", "found 3"]),
        (["translate", str(tmp_path / "ok.csv"), "--from", "moons", "--to", "checkerboards", "--out",
          str(tmp_path / "ok.csv")], ["is an input", "refusing to overwrite"]),
        (["translate", str(tmp_path / "ok.csv"), "--from", "moons", "--to", "checkerboards", "--out",
          str(tmp_path / "o.png")], ["must be a .csv or .npy"]),
        (["translate", str(tmp_path / "nothing.csv"), "--from", "moons", "--to", "checkerboards"], ["not found"]),
        (["cycle", "--from", "moonz", "--to", "checkerboards"], ["no trained model", "moonz"]),
        (["cycle", "--from", "fives", "--to", "moons"], ["fives is not a 2-D point domain"]),
        (["plot", "--from", "moons", "--to", "checkerboards", "--out", str(tmp_path / "f.jpg")], [".png"]),
        (["cycle-table", "--pairs", "moons-checkerboards"], ["A:B"]),
        (["sample", "--domain", "moons", "--out", str(tmp_path / "s.txt")], [".csv", ".npy"]),
        (["train", "--domain", "spirals"], ["unknown domain", "moons, checkerboards"]),
        (["train", "--domain", "fives", "--width", "8"], ["apply to point domains only"]),
        (["train", "--domain", "moons", "--model-size", "tiny"], ["--model-size is for image domains"]),
    ]  # fmt: skip
    for args, fragments in cases:
        _in_process_one_line_error(_cli(capsys, *args, *m), *fragments)
    assert (tmp_path / "ok.csv").read_text() == "0,0\n1,1\n"  # never overwritten
