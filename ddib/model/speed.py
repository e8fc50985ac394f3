"""Fast kernels for one device: channels_last memory format, torch.compile, CUDA graphs, bf16 / fp16 autocast,
TF32 — a network wrapper.

The wrapper changes how ε̂ is computed, never what the schedule or the solver do. Autocast applies to decoding
only: an ODE solve towards noise runs the network in fp32 whatever the setting (`utils.reduced_precision`).
Defaults per device come from `ddib bench speed` (bench/speed-*.md, docs/speed.md): a setting is on by default
only where it measured faster *and* its translations stay within a fraction of an 8-bit level of the fp32 ones.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DDIBError
from ..utils import reduced_precision_allowed, tf32_kernels
from .diffusion import Diffusion

NAMES = ("channels_last", "compile", "cuda_graphs", "bf16", "fp16", "tf32")
# Graphs one compiled network may hold: one per input shape (dynamic=False), i.e. per batch size and per |G|·B of a
# symmetry average, for each network architecture in the process.
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class SpeedOptions:
    """channels_last: NHWC convolutions; compile: torch.compile the network; cuda_graphs: torch.compile in
    "reduce-overhead" mode, which replays each network evaluation as one recorded CUDA graph (small batches are
    otherwise bound by kernel launches); bf16 / fp16: bfloat16 / float16 autocast while decoding; tf32: TF32 CUDA
    convolutions and matmuls (ODE solves otherwise run them in full fp32)."""

    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    bf16: bool = False
    fp16: bool = False
    tf32: bool = False

    @property
    def reduced(self) -> str | None:
        """The reduced precision decodes run in ('bf16' or 'fp16'), if any."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else None

    @property
    def autocast(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.reduced)

    def describe(self) -> str:
        on = [name for name in NAMES if getattr(self, name)]
        return "+".join(on) or "fp32 eager"


def describe_precision(options: SpeedOptions) -> str:
    """', fp16 decodes' for summary lines when a reduced precision is on (encodes are fp32 anyway); else ''."""
    return "" if options.reduced is None else f", {options.reduced} decodes"


def parse_speed(text: str) -> SpeedOptions:
    """'fp32 eager' / 'eager' or a '+'-joined subset of NAMES (as `describe` writes)."""
    names = {n.strip() for n in text.replace("fp32 eager", "eager").split("+") if n.strip()} - {"eager"}
    unknown = names - set(NAMES)
    if unknown:
        raise DDIBError(f"unknown speed setting {', '.join(sorted(unknown))}; use eager or a '+'-joined subset of "
                        f"{', '.join(NAMES)}")  # fmt: skip
    return SpeedOptions(**{n: True for n in names})


def default_speed(device: torch.device) -> SpeedOptions:
    """The fast settings that `ddib bench speed` found both faster and accurate per device (bench/speed-cpu.md:
    channels_last on CPU; bench/speed-cuda.md: plain fp32 on CUDA, where TF32 and bf16 move translations)."""
    if device.type == "cpu":
        return SpeedOptions(channels_last=True)
    return SpeedOptions()


def check_speed(options: SpeedOptions, device: torch.device) -> None:
    if options.bf16 and options.fp16:
        raise DDIBError("--bf16 and --fp16 are two autocast precisions: choose one")
    if options.reduced is not None and device.type not in ("cuda", "cpu"):
        raise DDIBError(f"--{options.reduced} autocast is supported on cuda and cpu, not {device.type}")
    if options.cuda_graphs and device.type != "cuda":
        raise DDIBError(f"CUDA graphs need a CUDA device, not {device.type}; use --compile there")


def _allow_recompiles(limit: int) -> None:
    """Past dynamo's recompile limit (8 by default) a compiled function quietly runs eagerly: a benchmark over many
    batch sizes would time eager kernels under a compiled setting's name."""
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # older torch
    setattr(cfg, name, max(getattr(cfg, name), limit))


class FastNet(nn.Module):
    """Runs `net` under the chosen memory format and autocast (while decoding); outputs stay in the input's dtype."""

    def __init__(self, net: nn.Module, options: SpeedOptions):
        super().__init__()
        self.net = net
        self.config = net.config
        self.options = options
        images = len(net.config.data_shape) == 3
        self.memory_format = torch.channels_last if options.channels_last and images else None
        if self.memory_format is not None:
            self.net = net = copy.deepcopy(net).to(memory_format=self.memory_format)  # the caller's net is untouched
        if options.cuda_graphs or options.compile:
            _allow_recompiles(RECOMPILE_LIMIT)
        if options.cuda_graphs:
            build = functools.partial(torch.compile, mode="reduce-overhead", dynamic=False)
        elif options.compile:
            build = functools.partial(torch.compile, dynamic=False)
        else:
            build = lambda fn: fn  # noqa: E731
        self.forward_impl = build(self._forward)
        # the fp32 network an encode runs under an autocast setting: its own graphs
        self.forward_fp32 = build(self._forward_fp32) if options.autocast is not None else self.forward_impl

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                 autocast: bool = True) -> torch.Tensor:  # fmt: skip
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        dtype = self.options.autocast
        with (
            tf32_kernels(self.options.tf32),
            torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=autocast and dtype is not None),
        ):
            out = self.net(x, t) if labels is None else self.net(x, t, labels)
        return out.to(x.dtype).contiguous()

    def _forward_fp32(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self._forward(x, t, labels, autocast=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        impl = self.forward_impl if reduced_precision_allowed() else self.forward_fp32
        if not self.options.cuda_graphs:
            return impl(x, t, labels)
        # Each evaluation is a new replay, and a replay writes its output where the last one lives while a solver
        # still holds earlier ε̂: mark the step and copy the output out.
        torch.compiler.cudagraph_mark_step_begin()
        return impl(x, t, labels).clone()


def accelerate(model: Diffusion, options: SpeedOptions) -> Diffusion:
    """The same model (same weights, same schedule) with ε̂ computed through FastNet; inference only."""
    if options == SpeedOptions():
        return model
    device = next(model.net.parameters()).device
    check_speed(options, device)
    return model.derive(net=FastNet(model.net, options)).eval()


def accelerate_for(model: Diffusion, device: torch.device) -> Diffusion:
    """The model with the device's default kernels (what `ddib translate` runs without kernel options)."""
    return accelerate(model, default_speed(device))
