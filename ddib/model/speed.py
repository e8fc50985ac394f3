"""Fast kernels for one device: channels_last memory format, torch.compile, CUDA graphs, bf16 autocast, TF32 — a
network wrapper.

The wrapper changes how ε̂ is computed, never what the schedule or the solver do. Defaults per device come
from `ddib bench speed` (bench/speed-*.md, docs/speed.md): a setting is on by default only where it measured faster
*and* its translations stay within a fraction of an 8-bit level of the fp32 ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DDIBError
from ..utils import tf32_kernels
from .diffusion import Diffusion

NAMES = ("channels_last", "compile", "cuda_graphs", "bf16", "tf32")
# Graphs one compiled network may hold: one per input shape (dynamic=False), i.e. per batch size and per |G|·B of a
# symmetry average, for each network architecture in the process.
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class SpeedOptions:
    """channels_last: NHWC convolutions; compile: torch.compile the network; cuda_graphs: torch.compile in
    "reduce-overhead" mode, which replays each network evaluation as one recorded CUDA graph (small batches are
    otherwise bound by kernel launches); bf16: bfloat16 autocast (CUDA); tf32: TF32 CUDA convolutions and matmuls
    (ODE solves otherwise run them in full fp32)."""

    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    bf16: bool = False
    tf32: bool = False

    def describe(self) -> str:
        on = [name for name in NAMES if getattr(self, name)]
        return "+".join(on) or "fp32 eager"


def parse_speed(text: str) -> SpeedOptions:
    """'fp32 eager' / 'eager' or a '+'-joined subset of channels_last, compile, bf16, tf32 (as `describe` writes)."""
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
    if options.bf16 and device.type not in ("cuda", "cpu"):
        raise DDIBError(f"--bf16 autocast is supported on cuda and cpu, not {device.type}")
    if options.cuda_graphs and device.type != "cuda":
        raise DDIBError(f"CUDA graphs need a CUDA device, not {device.type}; use --compile there")


def _allow_recompiles(limit: int) -> None:
    """Past dynamo's recompile limit (8 by default) a compiled function quietly runs eagerly: a benchmark over many
    batch sizes would time eager kernels under a compiled setting's name."""
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"  # older torch
    setattr(cfg, name, max(getattr(cfg, name), limit))


class FastNet(nn.Module):
    """Runs `net` under the chosen memory format and autocast; outputs stay in the input's dtype."""

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
            self.forward_impl = torch.compile(self._forward, mode="reduce-overhead", dynamic=False)
        elif options.compile:
            self.forward_impl = torch.compile(self._forward, dynamic=False)
        else:
            self.forward_impl = self._forward

    def _forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        with (
            tf32_kernels(self.options.tf32),
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.options.bf16),
        ):
            out = self.net(x, t) if labels is None else self.net(x, t, labels)
        return out.to(x.dtype).contiguous()

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if not self.options.cuda_graphs:
            return self.forward_impl(x, t, labels)
        # Each evaluation is a new replay, and a replay writes its output where the last one lives while a solver
        # still holds earlier ε̂: mark the step and copy the output out.
        torch.compiler.cudagraph_mark_step_begin()
        return self.forward_impl(x, t, labels).clone()


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
