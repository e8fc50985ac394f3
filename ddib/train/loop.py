"""The training loop: ε- or v-prediction MSE, AdamW with warmup, gradient clipping, EMA, atomic resumable checkpoints.

The loop never prints; it reports through a callback so the CLI decides how to show progress.
Determinism: the data order of step k comes from torch's DistributedSampler seeded by (seed, epoch), and
the noise and timesteps of step k from a generator seeded by (seed, rank, k), so training 10 steps twice
gives exactly the weights of training 20 steps once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data.distributed import DistributedSampler

from ..data.augment import augment_batch
from ..errors import DDIBError
from ..model import checkpoint as ckpt
from ..model.diffusion import Diffusion
from ..model.nets import build_network
from .interrupts import Interrupted, StopRequest
from .lock import RunLock
from .log import LOG_FILE, TrainLog


class TrainingDiverged(DDIBError):
    """The loss stopped being finite."""


@dataclass
class Progress:
    step: int
    total: int
    loss: float
    images_per_s: float
    elapsed: float
    event: str = "step"  # "step" | "saved" | "sampled" | "start"
    path: str | None = None
    loss_ema: float = math.nan  # the smoothed loss of train_log.jsonl, continued across resumes


@dataclass
class TrainOptions:
    """Run-time settings that do not change the result (where to write, how often, how fast)."""

    steps: int
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    sample_every: int = 0
    save_every: int = 1000
    sample_count: int = 16
    bf16: bool = False
    compile: bool = False
    channels_last: bool = False
    rank: int = 0
    world_size: int = 1
    log_every: int = 100  # steps per line of train_log.jsonl
    stop_on_signal: bool = False  # the first SIGINT/SIGTERM stops at a step boundary, after saving (interrupts.py)


class DataStream:
    """Batches of step k: epoch e is DistributedSampler(seed, epoch=e)'s shard, consumed in order."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.sampler = DistributedSampler(
            range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=n >= world_size
        )
        self.per_epoch = len(self.sampler)
        if self.per_epoch == 0:
            raise DDIBError("the dataset has fewer images than processes")
        self.batch_size = batch_size
        self._cache: dict[int, torch.Tensor] = {}

    def _epoch(self, e: int) -> torch.Tensor:
        if e not in self._cache:
            self.sampler.set_epoch(e)
            self._cache = {e: torch.tensor(list(self.sampler), dtype=torch.long)}
        return self._cache[e]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        parts, need = [], self.batch_size
        while need:
            e, offset = divmod(start, self.per_epoch)
            take = min(need, self.per_epoch - offset)
            parts.append(self._epoch(e)[offset : offset + take])
            start, need = start + take, need - take
        return torch.cat(parts)


def step_generator(seed: int, rank: int, step: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """The generator of step k on one rank; `stream` separates independent draws (0: loss noise, 1: augmentation)."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1_000_003 + rank) * 10_000_019 + step + stream * 1_000_000_000_000) % 2**63)
    return g


def lr_at(step: int, cfg: ckpt.TrainConfig, total_steps: int) -> float:
    """Warmup-stable-decay: linear warmup over warmup_steps, constant, then linear decay to 0 over the last
    cooldown_steps before total_steps (Hägele et al. 2024: a cooldown from any stable checkpoint)."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cool = min(1.0, (total_steps - step) / cfg.cooldown_steps) if cfg.cooldown_steps else 1.0
    return cfg.lr * warm * max(cool, 0.0)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, step: int, decay: float) -> None:
    """θ_ema ← d·θ_ema + (1 − d)·θ with d = min(decay, (1 + k)/(10 + k)) (warmup as in TF's EMA)."""
    d = min(decay, (1 + step) / (10 + step))
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in net.parameters()], 1.0 - d)


def to_model_space(batch: torch.Tensor) -> torch.Tensor:
    """uint8 images → [-1, 1]; float data (points) is used as is."""
    return batch.float().div(127.5).sub(1.0) if batch.dtype == torch.uint8 else batch.float()


def train(
    run_dir: Path,
    run_cfg: ckpt.RunConfig,
    data: torch.Tensor,
    opts: TrainOptions,
    callback: Callable[[Progress], None] | None = None,
    init_weights: dict[str, torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
) -> Diffusion:
    """Train (or resume) the model of `run_dir` up to opts.steps; returns the EMA model.

    `init_weights` (a warm start) set the network and its EMA of a new run; a run that resumes ignores them.
    `labels` (N,) are the class of every training example of a conditional model (run_cfg.model.num_classes).
    Rank 0 holds the run directory's lock (run_lock.py) for the whole run; a second trainer fails at once.
    """
    run_dir = Path(run_dir)
    if opts.rank != 0:
        if not agree(False, opts.world_size, opts.device, any_true=True):  # rank 0's verdict on its lock
            raise DDIBError(f"rank 0 could not lock {run_dir} (see its error)")
        return _train(run_dir, run_cfg, data, opts, callback, init_weights, labels)
    lock = RunLock(run_dir)
    try:
        lock.acquire()
    except DDIBError:
        agree(False, opts.world_size, opts.device, any_true=True)
        raise
    try:
        agree(True, opts.world_size, opts.device, any_true=True)
        return _train(run_dir, run_cfg, data, opts, callback, init_weights, labels)
    finally:
        lock.release()


def _train(run_dir, run_cfg, data, opts, callback, init_weights, labels) -> Diffusion:
    callback = callback or (lambda p: None)
    device = opts.device
    tcfg = run_cfg.train
    if opts.bf16 and device.type != "cuda":
        raise DDIBError("--bf16 needs a CUDA device (autocast to bfloat16 is only enabled on CUDA)")
    if len(data) == 0:
        raise DDIBError("the domain has no training data")
    classes = getattr(run_cfg.model, "num_classes", 0)
    if (labels is None) != (classes == 0) or (labels is not None and len(labels) != len(data)):
        raise DDIBError("a conditional model needs one label per training example, an unconditional one none")
    if labels is not None and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise DDIBError(f"training labels must lie in [0, {classes})")

    per_rank_batch, remainder = divmod(tcfg.batch_size, opts.world_size)
    if remainder or per_rank_batch == 0:
        raise DDIBError(f"--batch-size {tcfg.batch_size} must be a multiple of the {opts.world_size} processes")

    torch.manual_seed(tcfg.seed)  # the same initial weights on every rank
    net = build_network(run_cfg.model).to(device)
    images = len(run_cfg.model.data_shape) == 3
    memory_format = torch.channels_last if opts.channels_last and images else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    ema = copy.deepcopy(net).requires_grad_(False)
    model = Diffusion(net, run_cfg.diffusion)
    if opts.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        model = Diffusion(ddp, run_cfg.diffusion)  # gradients are averaged over ranks in backward()
    optimizer = torch.optim.AdamW(net.parameters(), lr=tcfg.lr, weight_decay=0.0)
    start = 0

    state = ckpt.load_train_state(run_dir)
    if state is not None:
        saved = ckpt.RunConfig.from_dict(state["config"], str(run_dir / ckpt.STATE_JSON))
        check_resumable(saved, run_cfg, run_dir)
        run_cfg = dataclasses.replace(run_cfg, init=saved.init)  # a warm start's provenance outlives resumes
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    elif init_weights is not None:
        try:
            net.load_state_dict({k: v.float() for k, v in init_weights.items()}, strict=True)
        except RuntimeError:
            raise DDIBError("the --init-from weights do not match this run's network") from None
        ema.load_state_dict(net.state_dict())

    log = TrainLog(run_dir / LOG_FILE)
    if opts.rank == 0:
        log.resume(start)
    stream = DataStream(len(data), per_rank_batch, tcfg.seed, opts.rank, opts.world_size)
    cpu = torch.device("cpu")
    forward = torch.compile(model.loss) if opts.compile else model.loss
    net.train()
    callback(Progress(start, opts.steps, math.nan, 0.0, 0.0, event="start"))
    t0 = time.perf_counter()
    last_time, last_step = t0, start
    interval_losses: list[float] = []
    with StopRequest(opts.stop_on_signal) as stop:
        for step in range(start, opts.steps):
            idx = stream.indices(step)
            batch = data[idx]
            batch_labels = None if labels is None else labels[idx].to(device)
            batch = augment_batch(batch, tcfg.augment, step_generator(tcfg.seed, opts.rank, step, cpu, stream=1))
            batch = to_model_space(batch).to(device, non_blocking=True)
            batch = batch.contiguous(memory_format=memory_format) if images else batch
            lr = lr_at(step, tcfg, opts.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            gen = step_generator(tcfg.seed, opts.rank, step, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16):
                loss = forward(batch, gen, batch_labels, tcfg.label_dropout)
            loss_value = float(loss.detach())
            if not agree(math.isfinite(loss_value), opts.world_size, device):  # every rank stops together
                raise TrainingDiverged(
                    f"loss became {loss_value} at step {step + 1}; stopped without saving it "
                    f"(the last checkpoint in {run_dir} is intact); try a lower --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), tcfg.grad_clip)
            optimizer.step()
            ema_update(ema, net, step, tcfg.ema_decay)

            done = step + 1
            now = time.perf_counter()
            rate = (done - last_step) * tcfg.batch_size / max(now - last_time, 1e-9)
            interval_losses.append(loss_value)
            loss_ema = log.smooth(loss_value)
            callback(Progress(done, opts.steps, loss_value, rate, now - t0, loss_ema=loss_ema))
            if done % opts.log_every == 0 or done == opts.steps:
                loss_mean = mean_across(sum(interval_losses) / len(interval_losses), opts.world_size, device)
                if opts.rank == 0:
                    log.append({"step": done, "loss": loss_mean, "loss_ema": loss_ema, "lr": lr,
                                "images_per_s": rate, "elapsed": log.elapsed + now - t0})  # fmt: skip
                interval_losses = []
            # A stop signal (first Ctrl-C, SIGTERM) ends the run at this step boundary, on every rank at once.
            stopping = not agree(not stop.requested, opts.world_size, device)
            if done % opts.save_every == 0 or done == opts.steps or stopping:
                check_replicas(net, ema, opts.world_size, device, done)
                if opts.rank == 0:
                    save(run_dir, run_cfg, net, ema, optimizer, done)
                    callback(Progress(done, opts.steps, loss_value, rate, now - t0, event="saved", path=str(run_dir)))
                barrier(opts.world_size)  # no rank runs ahead of (or resumes from) a half-written checkpoint
            if stopping:
                raise Interrupted(stop.signum or signal.SIGINT, f"at step {done}; checkpoint saved in {run_dir}")
            if opts.rank == 0 and opts.sample_every and done % opts.sample_every == 0:
                path = save_samples(run_dir, run_cfg, ema, done, opts.sample_count, device)
                callback(Progress(done, opts.steps, loss_value, rate, now - t0, event="sampled", path=str(path)))
            if done % 50 == 0:
                last_time, last_step = time.perf_counter(), done

    if opts.rank == 0 and start >= opts.steps and not (run_dir / ckpt.WEIGHTS_FILE).exists():
        save(run_dir, run_cfg, net, ema, optimizer, start)
    barrier(opts.world_size)
    return Diffusion(ema, run_cfg.diffusion).eval()


def agree(ok: bool, world_size: int, device: torch.device, any_true: bool = False) -> bool:
    """Whether `ok` holds on every rank (with any_true: on some rank); one all-reduce when distributed."""
    if world_size == 1:
        return ok
    import torch.distributed as dist

    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX if any_true else dist.ReduceOp.MIN)
    return flag.item() == 1.0


def mean_across(value: float, world_size: int, device: torch.device) -> float:
    """The mean of a number over ranks (the value itself in a single process)."""
    if world_size == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / world_size


def check_replicas(net: torch.nn.Module, ema: torch.nn.Module, world_size: int, device: torch.device, step: int):
    """Data-parallel replicas must hold identical weights: compare per-tensor float64 sums over ranks."""
    if world_size == 1:
        return
    import torch.distributed as dist

    tensors = list(net.state_dict().values()) + list(ema.state_dict().values())
    mine = torch.stack([t.detach().double().sum() for t in tensors] + [t.detach().double().square().sum()
                                                                      for t in tensors]).to(device)  # fmt: skip
    every = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(every, mine)
    differ = [r for r in range(1, world_size) if not torch.equal(every[r], every[0])]
    if differ:
        raise DDIBError(
            f"the data-parallel processes hold different weights at step {step} (ranks {differ} differ from rank 0);"
            " not saving them. This is a bug or a non-deterministic kernel: please report it"
        )


def barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


# Settings a run may change when resuming: the cooldown, and the inference-only symmetry (the loss uses the raw net).
RESCHEDULABLE = {"cooldown_steps", "symmetry"}


def check_resumable(saved: ckpt.RunConfig, requested: ckpt.RunConfig, run_dir: Path) -> None:
    """A run resumes only with the settings it started with; the cooldown and symmetry may change later."""
    diffs = []
    for section in ("model", "diffusion", "train"):
        a, b = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(requested, section))
        changed = [k for k in a if a[k] != b.get(k) and k not in RESCHEDULABLE]
        diffs += [f"{k}: {a[k]} (saved) vs {b.get(k)} (asked)" for k in changed]
    if saved.domain != requested.domain:
        diffs.append(f"data: {saved.domain} (saved) vs {requested.domain} (asked)")
    if diffs:
        raise DDIBError(
            f"{run_dir} holds a run with other settings ({'; '.join(diffs)}); "
            "pass the same options to resume, or use another --models-dir"
        )


def save(run_dir: Path, run_cfg: ckpt.RunConfig, net, ema, optimizer, step: int) -> None:
    """Atomically write the training state (tensors, then JSON), then model.safetensors (EMA), then config.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "config": run_cfg.to_dict(),
        "net": net.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and next(net.parameters()).is_cuda:
        state["rng_cuda"] = torch.cuda.get_rng_state()
    ckpt.save_train_state(run_dir, state)
    ckpt.save_weights(run_dir, Diffusion(ema, run_cfg.diffusion), {"step": str(step), "domain": run_cfg.domain["name"]})
    payload = run_cfg.to_dict()
    payload["trained_steps"] = step
    payload["versions"] = ckpt.versions()
    ckpt.write_json(run_dir / ckpt.CONFIG_FILE, payload)


POINT_SAMPLES = 4000  # samples in the scatter plot of a point model (a 4×4 grid says nothing about a 2-D set)


def save_samples(run_dir: Path, run_cfg: ckpt.RunConfig, ema, step: int, n: int, device) -> Path:
    """A grid of EMA samples (a scatter plot for point models) from fixed noise, comparable across steps."""
    from ..bridge.ode import decode, sample
    from ..io.images import image_grid, save_png

    model = Diffusion(ema, run_cfg.diffusion).eval()
    gen = torch.Generator().manual_seed(0)
    path = run_dir / "samples" / f"step-{step:06d}.png"
    if run_cfg.model.kind == "mlp":
        from ..io.point_figures import scatter_image

        x = sample(model, max(n, POINT_SAMPLES), gen, device=device)
        save_png(scatter_image(x, f"{run_cfg.domain['name']} samples, step {step} (model space)"), path)
        return path
    if model.num_classes:  # a conditional model: one row per label, the same noise in every row
        per_label = max(2, n // model.num_classes)
        z = torch.randn((per_label, *model.data_shape), generator=gen)
        rows = [decode(model.with_label(k), z.to(device)) for k in range(model.num_classes)]
        save_png(image_grid(torch.cat(rows), nrow=per_label), path)
        return path
    x = sample(model, n, gen, device=device)
    save_png(image_grid(x, nrow=int(math.ceil(math.sqrt(n)))), path)
    return path
