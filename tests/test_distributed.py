"""Data-parallel training on CPU: 2 processes with gloo, as torchrun launches them."""

import os
import subprocess
import sys

import torch
import torch.multiprocessing as mp

from ddib.model import checkpoint as ckpt
from ddib.model.nets import build_network
from ddib.train.log import LOG_FILE, read_log
from ddib.train.loop import TrainOptions, train

from .conftest import REPO, make_blob_images, mnist_dir, needs_mnist, run_cli
from .test_train import _cfg, _data


def _worker(rank: int, world: int, init_file: str, run_dir: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = train(run_dir, _cfg(batch=8), _data(), TrainOptions(steps=6, save_every=3, rank=rank, world_size=world))
        torch.save({k: v.clone() for k, v in model.net.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_train_identical_weights(tmp_path):
    run_dir = tmp_path / "run"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(run_dir), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    state = ckpt.load_train_state(run_dir)
    assert state["step"] == 6
    saved = state["ema"]
    assert all(torch.equal(saved[k], a[k]) for k in a)  # rank 0 wrote what every rank holds
    torch.manual_seed(_cfg().train.seed)
    init = build_network(_cfg().model).state_dict()
    assert not all(torch.equal(init[k], saved[k]) for k in saved)  # training moved the weights


def _torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "ddib"]
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_torchrun_cli_trains_a_symmetric_domain_and_resumes_bit_identically(tmp_path):
    data = make_blob_images(tmp_path / "reds", 16, (230, 30, 30), seed=1)
    args = ["train", "--domain", "reds", "--data", str(data), "--symmetry", "rgb-cyclic", "--model-size", "tiny",
            "--image-size", "16", "--batch-size", "8", "--sample-every", "0", "--log-every", "1"]  # fmt: skip
    cut = ["--models-dir", str(tmp_path / "cut")]
    r = _torchrun(*args, *cut, "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("training reds") == 1  # rank 0 alone logs
    assert "2 processes × 4" in r.stdout and "weights identical on all 2 processes" in r.stdout
    r = _torchrun(*args, *cut, "--steps", "4")
    assert r.returncode == 0, r.stderr
    assert "resuming at step 2/4" in r.stdout and "weights identical on all 2 processes" in r.stdout
    r = _torchrun(*args, "--models-dir", str(tmp_path / "once"), "--steps", "4")
    assert r.returncode == 0, r.stderr
    a, b = (ckpt.load_train_state(tmp_path / d / "reds") for d in ("cut", "once"))
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a[part][k], b[part][k]) for part in ("net", "ema") for k in a[part])
    saved = ckpt.read_config(tmp_path / "cut" / "reds")[0]
    assert saved.diffusion.symmetry == "rgb-cyclic"
    assert [r["step"] for r in read_log(tmp_path / "cut" / "reds" / LOG_FILE)] == [1, 2, 3, 4]  # rank 0 writes it
    bad = run_cli("train", "--domain", "reds", "--data", str(data), "--models-dir", str(tmp_path / "m2"),
                  "--model-size", "tiny", "--image-size", "16", "--batch-size", "7", "--steps", "1",
                  env={"RANK": "0", "WORLD_SIZE": "1"})  # fmt: skip
    assert bad.returncode == 0  # a world of one is a plain run


@needs_mnist
def test_torchrun_trains_a_colored_digit_domain(tmp_path):
    r = _torchrun("train", "--domain", "fives", "--steps", "2", "--batch-size", "8", "--model-size", "tiny",
                  "--device", "cpu", "--data-dir", mnist_dir(), "--models-dir", str(tmp_path / "m"),
                  "--sample-every", "0", "--augment", "hue")  # fmt: skip
    assert r.returncode == 0, r.stderr
    cfg = ckpt.read_config(tmp_path / "m" / "fives")[0]
    assert cfg.diffusion.symmetry == "rgb-cyclic" and cfg.train.augment == "hue"
    assert "weights identical on all 2 processes" in r.stdout


def test_torchrun_refuses_a_locked_run_on_every_rank(tmp_path):
    from ddib.train.lock import RunLock

    data = make_blob_images(tmp_path / "reds", 8, (230, 30, 30), seed=1)
    with RunLock(tmp_path / "m" / "reds"):
        r = _torchrun("train", "--domain", "reds", "--data", str(data), "--models-dir", str(tmp_path / "m"),
                      "--model-size", "tiny", "--image-size", "16", "--batch-size", "8", "--steps", "2",
                      "--sample-every", "0", timeout=120)  # fmt: skip
    assert r.returncode != 0
    assert f"in use by another ddib train (pid {os.getpid()})" in r.stderr
    assert "rank 0 could not lock" in r.stderr  # the other rank stopped too instead of waiting for rank 0
    assert not (tmp_path / "m" / "reds" / ckpt.STATE_FILE).exists()


def _diverging_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from ddib.errors import DDIBError
    from ddib.train.loop import check_replicas

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        net = build_network(_cfg().model)
        check_replicas(net, net, world, torch.device("cpu"), step=1)  # identical: passes
        with torch.no_grad():
            next(net.parameters()).view(-1)[0] += 1e-6 * rank  # one weight of rank 1 drifts
        try:
            check_replicas(net, net, world, torch.device("cpu"), step=2)
            verdict = "passed"
        except DDIBError as err:
            verdict = str(err)
        open(os.path.join(out_dir, f"rank{rank}.txt"), "w").write(verdict)
    finally:
        dist.destroy_process_group()


def test_replicas_that_drift_apart_are_caught_on_every_rank(tmp_path):
    mp.spawn(_diverging_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        verdict = (tmp_path / f"rank{rank}.txt").read_text()
        assert "different weights at step 2 (ranks [1] differ from rank 0)" in verdict


def test_torchrun_translate_shards_inputs_and_writes_each_output_once(tmp_path, tiny_models):

    import numpy as np
    from PIL import Image

    from ddib.bridge.latent import Latent

    src = make_blob_images(tmp_path / "in", 5, (230, 30, 30), seed=7)  # 5 inputs: uneven shares of 3 and 2
    common = ["translate", str(src), "--from", "reds", "--to", "blues", "--models-dir", str(tiny_models),
              "--steps", "3", "--batch-size", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    dist_args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ddib"]
    r = subprocess.run([*dist_args, *common, "--out-dir", str(tmp_path / "two"), "--grid", str(tmp_path / "g2.png"),
                        "--save-latent", str(tmp_path / "z2.safetensors")],
                       env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("translated 5 images") == 1 and "on 2 processes" in r.stdout  # rank 0 alone reports
    one = run_cli(*common, "--out-dir", str(tmp_path / "one"), "--save-latent", str(tmp_path / "z1.safetensors"))
    assert one.returncode == 0, one.stderr
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one").iterdir()) and len(names) == 5
    for name in names:
        a = np.asarray(Image.open(tmp_path / "two" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "one" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1  # same images (batch composition may move a pixel across a rounding edge)
    two, one = Latent.load(tmp_path / "z2.safetensors"), Latent.load(tmp_path / "z1.safetensors")
    assert two.meta["names"] == one.meta["names"]
    torch.testing.assert_close(two.z, one.z, atol=1e-4, rtol=1e-4)  # gathered back in input order
    assert (tmp_path / "g2.png").exists()


def _same_pngs(a, b) -> None:
    import numpy as np
    from PIL import Image

    a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in (a, b))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # batch composition may move a pixel a level


def _shards_like_one_process(common: list[str], summary: str, tmp_path) -> None:
    """`common` under 2 torchrun processes writes the files and the grid one process does; rank 0 alone reports."""
    two = _torchrun(*common, "--out-dir", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count(summary) == 1 and "on 2 processes" in two.stdout
    g = _torchrun(*common, "--out", str(tmp_path / "g2.png"))
    assert g.returncode == 0, g.stderr
    for args in (("--out-dir", str(tmp_path / "one")), ("--out", str(tmp_path / "g1.png"))):
        one = run_cli(*common, *args)
        assert one.returncode == 0 and "processes" not in one.stdout, one.stderr
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one").iterdir()) and len(names) == 5
    for name in names:
        _same_pngs(tmp_path / "two" / name, tmp_path / "one" / name)
    _same_pngs(tmp_path / "g2.png", tmp_path / "g1.png")  # the grid gathered back in order


def test_torchrun_sample_shards_the_draws_and_matches_one_process(tmp_path, tiny_models):
    common = ["sample", "--domain", "reds", "-n", "5", "--models-dir", str(tiny_models), "--steps", "2",
              "--batch-size", "2"]  # fmt: skip
    _shards_like_one_process(common, "sampled 5 reds", tmp_path)


def test_torchrun_decode_shards_the_latents_and_matches_one_process(tmp_path, tiny_models):
    src = make_blob_images(tmp_path / "in", 5, (230, 30, 30), seed=3)
    models = ["--models-dir", str(tiny_models), "--steps", "2", "--batch-size", "2"]
    z = tmp_path / "z.safetensors"
    r = run_cli("translate", str(src), "--from", "reds", "--to", "blues", "--out-dir", str(tmp_path / "t"),
                "--save-latent", str(z), *models)  # fmt: skip
    assert r.returncode == 0, r.stderr
    _shards_like_one_process(["decode", str(z), "--to", "blues", *models], "decoded 5 latents", tmp_path)


def test_torchrun_evaluate_shards_the_sources_and_scores_them_all_once(tmp_path, tiny_models):
    import json

    src = make_blob_images(tmp_path / "in", 5, (230, 30, 30), seed=4)
    common = ["evaluate", "--from", "reds", "--to", "blues", "--inputs", str(src), "--models-dir", str(tiny_models),
              "--steps", "2", "--batch-size", "2"]  # fmt: skip
    two = _torchrun(*common, "--json", str(tmp_path / "two.json"), "--grid", str(tmp_path / "g2.png"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("held-out images") == 1  # one report, from rank 0
    one = run_cli(*common, "--json", str(tmp_path / "one.json"), "--grid", str(tmp_path / "g1.png"))
    assert one.returncode == 0, one.stderr
    a, b = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("two", "one"))
    assert a["n"] == b["n"] == 5 and a["device"] == "cpu × 2 processes" and b["device"] == "cpu"
    assert a["nfe_per_image"] == b["nfe_per_image"]
    for key in ("hue_error_median", "hue_error_p90", "cycle_rmse"):  # every source scored, none twice
        assert abs(a[key] - b[key]) <= 1e-3 * max(1.0, abs(b[key])), key
    _same_pngs(tmp_path / "g2.png", tmp_path / "g1.png")  # outputs gathered back in source order


def test_torchrun_likelihood_and_classify_score_whole_batches_as_one_process_does(tmp_path, tiny_models):
    import json

    src = make_blob_images(tmp_path / "in", 5, (230, 30, 30), seed=5)
    common = [str(src), "--domain", "reds", "--domain", "blues", "--models-dir", str(tiny_models), "--batch-size", "2",
              "--tol", "1e-3", "--probes", "1"]  # fmt: skip
    runs = {}
    for k, run in (("two", _torchrun), ("one", run_cli)):
        r = run("likelihood", *common, "--json", str(tmp_path / f"{k}.json"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("5 images × 2 models") == 1 and ("on 2 processes" in r.stdout) == (k == "two")
        c = run("classify", *common, "--method", "elbo", "--levels", "4")
        assert c.returncode == 0, c.stderr
        runs[k] = json.loads((tmp_path / f"{k}.json").read_text())["results"], c.stdout.splitlines()
    (two, _), (one, _) = runs["two"], runs["one"]
    assert [r["image"] for r in two] == [r["image"] for r in one] and len(one) == 5  # every image once, in order
    for a, b in zip(two, one, strict=True):
        for domain in ("reds", "blues"):
            assert abs(a[domain][0] - b[domain][0]) <= 1e-4 * abs(b[domain][0]), (a, b)
    verdicts = {k: [line.split(";")[0] for line in lines] for k, (_, lines) in runs.items()}
    assert len(verdicts["one"]) == 5 and verdicts["two"] == verdicts["one"]  # each image's ranking, in order


def test_commands_that_do_not_shard_refuse_to_run_under_several_processes(tmp_path):
    """Each torchrun process would repeat the whole command and race the others on its output files."""
    world = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
    demo = ("demo", "--out", str(tmp_path / "d.png"))
    for args, name in ((demo, "ddib demo"), (("models", "add", "x", str(tmp_path)), "ddib models add")):
        r = run_cli(*args, env=world)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"`{name}` runs in one process" in r.stderr and not (tmp_path / "d.png").exists()
        assert (
            "only `ddib train`, `ddib sample`, `ddib translate`, `ddib decode`, `ddib evaluate`, `ddib likelihood` "
            "and `ddib classify` split"
        ) in r.stderr
    r = run_cli(*demo, env={**world, "WORLD_SIZE": "1"})
    assert r.returncode == 0 and (tmp_path / "d.png").is_file(), r.stderr  # a world of one is a plain run
