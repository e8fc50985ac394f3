"""Kernel settings (channels_last, bf16 / fp16 autocast), the automatic batch size and `ddib bench speed`."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from ddib.bridge import ode
from ddib.bridge.batching import CPU_BATCH, auto_batch_size, fitting_batch, pixel_batch
from ddib.bridge.tuning.gradient import gradient_batch
from ddib.bridge.tuning.solves import solve_batch
from ddib.errors import DDIBError
from ddib.likelihood.source_inference import LIKELIHOOD_BATCH
from ddib.model.diffusion import Diffusion
from ddib.model.nets import build_network, unet_config
from ddib.model.speed import FastNet, SpeedOptions, accelerate, parse_speed
from ddib.train.distributed import DistInfo, gather_in_order, shard

from .conftest import run_cli


def _model(seed=0):
    torch.manual_seed(seed)
    net = build_network(unet_config("tiny", image_size=16))
    with torch.no_grad():  # the output layer starts at zero: give every weight a value so outputs are non-trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Diffusion(net).eval()


def test_channels_last_computes_the_same_translation_without_touching_the_callers_net():
    model = _model()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    opts = ode.ODEOptions("heun2", steps=3)  # the random net makes large outputs: compare relatively
    fast = accelerate(model, SpeedOptions(channels_last=True))
    convs = [p for p in fast.net.parameters() if p.ndim == 4 and p.shape[-1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(p.is_contiguous() for p in model.net.parameters())  # the original keeps NCHW weights
    a, b = ode.translate(fast, fast, x, opts), ode.translate(model, model, x, opts)
    # fp32 reassociation only (a layout bug would be O(1)); the random net amplifies it to ~1e-5 over 3 steps
    assert ((a - b).norm() / b.norm()).item() < 1e-4


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_runs_on_cpu_and_moves_the_output_a_little(precision):
    model = _model()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    t = torch.full((2,), 0.3)
    exact = model.eps(x, t)
    approx = accelerate(model, SpeedOptions(**{precision: True})).eps(x, t)
    assert approx.dtype == torch.float32 and approx.shape == exact.shape
    err = (approx - exact).abs().max().item()
    assert 0 < err < 0.2 * exact.abs().max().item()  # bf16 keeps ~3 significant digits, fp16 ~4, not 7


@pytest.mark.parametrize("compiled", [False, True])
def test_autocast_decodes_but_never_encodes(compiled, monkeypatch):
    """Encoding runs towards noise, where the flow grows rounding errors: it stays fp32 under an autocast setting."""
    if compiled:
        import torch._dynamo as dynamo

        real_compile = torch.compile
        monkeypatch.setattr(torch, "compile", lambda fn, mode=None, dynamic=None: real_compile(fn, backend="eager"))
        dynamo.reset()
    model = _model()
    fast = accelerate(model, SpeedOptions(bf16=True, compile=compiled))
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    opts = ode.ODEOptions("heun2", steps=3)
    z = ode.encode(model, x, opts)
    assert torch.equal(ode.encode(fast, x, opts), z)  # the very fp32 network
    exact, approx = ode.decode(model, z, opts), ode.decode(fast, z, opts)
    assert not torch.equal(approx, exact) and ((approx - exact).norm() / exact.norm()).item() < 0.05
    with pytest.raises(DDIBError, match="choose one"):
        accelerate(model, SpeedOptions(bf16=True, fp16=True))
    if compiled:
        torch._dynamo.reset()  # no graphs of the patched compile left for later tests in this process


def test_parse_speed_round_trips_describe():
    for opts in (SpeedOptions(), SpeedOptions(channels_last=True, compile=True), SpeedOptions(bf16=True, tf32=True),
                 SpeedOptions(cuda_graphs=True), SpeedOptions(fp16=True, compile=True)):  # fmt: skip
        assert parse_speed(opts.describe()) == opts
    with pytest.raises(DDIBError, match="unknown speed setting"):
        parse_speed("channels_first")


def test_cuda_graph_outputs_survive_the_next_replay(monkeypatch):
    """A replayed CUDA graph writes every output into the same memory: FastNet hands out copies."""
    modes = []

    def fake_compile(fn, mode=None, dynamic=None):  # a "graph" whose output buffer is reused by every call
        modes.append(mode)
        buffer = {}

        def replay(*args):
            out = fn(*args)
            buffer.setdefault("out", torch.empty_like(out)).copy_(out)
            return buffer["out"]

        return replay

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _model()
    net = FastNet(model.net, SpeedOptions(cuda_graphs=True))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    first = net(x, torch.full((2,), 0.2))
    kept = first.clone()
    net(x, torch.full((2,), 0.8))
    assert modes == ["reduce-overhead"]
    assert torch.equal(first, kept)  # the second evaluation did not overwrite the first's ε̂


def test_a_compiled_net_stays_compiled_over_many_batch_sizes(monkeypatch):
    """One graph per batch size (dynamic=False): past dynamo's default limit of 8 it would fall back to eager."""
    import torch._dynamo as dynamo

    real_compile = torch.compile

    def eager_backend(fn, mode=None, dynamic=None):  # dynamo's graph bookkeeping without inductor's build time
        return real_compile(fn, backend="eager", dynamic=dynamic)

    monkeypatch.setattr(torch, "compile", eager_backend)
    monkeypatch.setattr(dynamo.config, "recompile_limit", 8)
    dynamo.reset()
    dynamo.utils.counters.clear()
    model = _model()
    net = FastNet(model.net, SpeedOptions(compile=True))
    x = torch.randn(12, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for b in range(1, 13):
            torch.testing.assert_close(net(x[:b], torch.full((b,), 0.4)), model.net(x[:b], torch.full((b,), 0.4)))
    assert dynamo.utils.counters["stats"]["unique_graphs"] == 12
    dynamo.reset()


def test_cuda_graphs_need_a_cuda_device(tmp_path, tiny_models):
    with pytest.raises(DDIBError, match="CUDA graphs need a CUDA device"):
        accelerate(_model(), SpeedOptions(cuda_graphs=True))
    for args in (("translate", "--from", "reds", "--to", "blues", "-n", "1", "--cuda-graphs"),
                 ("bench", "throughput", "--from", "reds", "--to", "blues", "--kernels", "cuda_graphs")):  # fmt: skip
        r = run_cli(*args, "--models-dir", str(tiny_models), "--steps", "2", "--out-dir", str(tmp_path))
        assert r.returncode != 0 and "CUDA graphs need a CUDA device" in r.stderr and "Traceback" not in r.stderr


class _FlagSpy(torch.nn.Module):
    """A network that records the TF32 flags in force whenever it is called."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config, self.seen = net, net.config, []

    def forward(self, x, t):
        self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return self.net(x, t)


@pytest.fixture
def pytorch_tf32_defaults():
    """TF32 allowed for convolutions and matmuls before the solve (PyTorch allows it for convolutions)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("tf32", [False, True])
def test_ode_solves_forbid_tf32_unless_the_speed_setting_allows_it(tf32, pytorch_tf32_defaults):
    model = _model()
    source_spy, target_spy = _FlagSpy(model.net), _FlagSpy(model.net)
    source = accelerate(Diffusion(source_spy, model.config).eval(), SpeedOptions(tf32=tf32))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ode.translate(source, Diffusion(target_spy, model.config).eval(), x, ode.ODEOptions("euler", steps=2))
    assert set(source_spy.seen) == {(tf32, tf32)}  # only the explicit setting allows it
    assert set(target_spy.seen) == {(False, False)}
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)  # restored


def test_fitting_batch_is_the_largest_power_of_two_that_fits():
    assert fitting_batch(0, 1.0, 100, fraction=1.0) == 64
    assert fitting_batch(40, 1.0, 100, fraction=1.0) == 32  # fixed cost comes off the budget first
    assert fitting_batch(0, 1.0, 100, fraction=1.0, cap=16) == 16
    assert fitting_batch(0, 1000.0, 100) == 1  # never below one
    assert auto_batch_size([_model()], torch.device("cpu"), 10_000) == CPU_BATCH
    assert auto_batch_size([_model()], torch.device("cpu"), 5) == 5  # no bigger than the work


@pytest.mark.parametrize(("size", "batch", "likelihood", "gradient"),
                         [(8, 64, 16, 32), (32, 64, 16, 32), (64, 16, 4, 8), (128, 4, 1, 2), (256, 1, 1, 1),
                          (512, 1, 1, 1)])  # fmt: skip
def test_batches_of_large_images_hold_the_pixels_of_small_ones(size, batch, likelihood, gradient):
    """A 256×256 UNet needs hundreds of MiB per image: 64 of them at once would exhaust a laptop's memory."""
    images = SimpleNamespace(data_shape=(3, size, size))
    assert auto_batch_size([images], torch.device("cpu"), 10_000) == batch
    assert auto_batch_size([_model(), images], torch.device("cpu"), 10_000) == batch  # the larger data decides
    assert pixel_batch([images], LIKELIHOOD_BATCH) == likelihood
    assert solve_batch(images) == batch and gradient_batch(_model(), images) == gradient  # tune-solver's


def test_shard_then_gather_restores_order_and_covers_everything_once():
    items = list(range(11))
    shares = [shard(items, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shares, [])) == items
    assert gather_in_order(items, DistInfo()) == items


def test_bench_speed_end_to_end(tmp_path, tiny_models):
    r = run_cli("bench", "speed", "--from", "reds", "--to", "blues", "--models-dir", str(tiny_models),
                "--batch-size", "2", "--steps", "2", "--threads", "1", "--train-size", "tiny",
                "--settings", "eager,channels_last,bf16,fp16,tf32,cuda_graphs", "--out-dir", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "speed-cpu.csv").read_text().splitlines()
    # header, 4 translate settings (tf32 and CUDA graphs are CUDA-only), 2 train settings (bf16 training is
    # CUDA-only, no fp16, tf32 or CUDA-graph rows)
    assert len(rows) == 1 + 4 + 2
    assert rows[1].startswith("translate,fp32 eager,1,2,") and ",1.0," in rows[1]
    bad = run_cli("bench", "speed", "--models-dir", str(tiny_models), "--from", "reds", "--to", "blues",
                  "--settings", "turbo", "--out-dir", str(tmp_path))  # fmt: skip
    assert bad.returncode != 0 and "unknown speed setting" in bad.stderr and "Traceback" not in bad.stderr


def test_solving_commands_take_kernel_options_and_say_when_decodes_are_reduced(tmp_path, tiny_models):
    from .conftest import make_blob_images

    src = make_blob_images(tmp_path / "in", 1, (230, 30, 30), seed=3)
    common = ("--models-dir", str(tiny_models), "--steps", "2")
    r = run_cli("translate", str(src), "--from", "reds", "--to", "blues", *common, "--channels-last", "--bf16",
                "--save-latent", str(tmp_path / "z.safetensors"), "--out-dir", str(tmp_path / "o"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "o").iterdir())) == 1 and ", bf16 decodes:" in r.stdout
    r = run_cli("decode", str(tmp_path / "z.safetensors"), "--to", "blues", *common, "--fp16",
                "--out", str(tmp_path / "d.png"))  # fmt: skip
    assert r.returncode == 0 and ", fp16 decodes:" in r.stdout and (tmp_path / "d.png").is_file(), r.stderr
    plain = run_cli("sample", "--domain", "reds", "-n", "2", *common, "--out", str(tmp_path / "a.png"))
    low = run_cli("sample", "--domain", "reds", "-n", "2", *common, "--fp16", "--out", str(tmp_path / "b.png"))
    assert plain.returncode == low.returncode == 0 and ", fp16 decodes:" in low.stdout
    assert "decodes" not in plain.stdout
    a, b = (np.asarray(Image.open(tmp_path / f"{k}.png"), dtype=float) for k in "ab")
    assert 0 < np.abs(a - b).max() and np.sqrt(((a - b) ** 2).mean()) < 8  # the autocast reaches the network
    for args in (("translate", str(src), "--from", "reds", "--to", "blues", "--bf16", "--fp16"),
                 ("sample", "--domain", "reds", "--cuda-graphs"),
                 ("decode", str(tmp_path / "z.safetensors"), "--to", "blues", "--cuda-graphs")):  # fmt: skip
        bad = run_cli(*args, *common, "--out-dir", str(tmp_path / "p"))
        assert bad.returncode != 0 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
        assert ("choose one" in bad.stderr or "CUDA graphs need" in bad.stderr) and not (tmp_path / "p").exists()


class _Blowup(torch.nn.Module):
    """A network whose activations pass float16's largest value (65504) while fp32 holds them."""

    def __init__(self, net):
        super().__init__()
        self.net, self.config = net, net.config
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
        torch.nn.init.constant_(self.conv.weight, 1e4)

    def forward(self, x, t):
        return self.conv(self.net(x, t) + 10) * 1e-6


def test_an_overflowing_decode_is_one_error_naming_fp16_not_black_images():
    from ddib.bridge import pipeline

    model = Diffusion(_Blowup(_model().net)).eval()
    z = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    opts = ode.ODEOptions("euler", steps=2)
    (fine,) = pipeline.collect(pipeline.decode_batches(model, z, opts))
    assert torch.isfinite(fine).all()  # fp32 holds the activations
    with pytest.raises(DDIBError, match=r"decode gave NaN or inf for 2 of 2 images; float16 overflowed"):
        pipeline.collect(pipeline.decode_batches(accelerate(model, SpeedOptions(fp16=True)), z, opts))
    with torch.no_grad():
        model.net.conv.weight.fill_(float("nan"))
    with pytest.raises(DDIBError, match="encode gave NaN or inf for 2 of 2 images; the model's output diverges"):
        pipeline.collect(pipeline.encode_batches(model, z, opts))
