"""torchrun integration: process-group setup from the environment, rank-0-only side effects, input sharding.

`torchrun --standalone --nproc-per-node N -m ddib train ...` sets RANK, LOCAL_RANK and WORLD_SIZE; ddib then
uses NCCL on GPUs (one per process, cuda:LOCAL_RANK) and gloo on CPU. Without those variables everything
runs as a single process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import DDIBError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def several_processes() -> bool:
    """torchrun started more than one process (a world of one is a plain run)."""
    return launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    if not several_processes():
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
    if device.type == "cuda":
        if torch.cuda.device_count() <= info.local_rank:
            raise DDIBError(f"LOCAL_RANK {info.local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise DDIBError(f"distributed runs support cuda and cpu, not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return info, device


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: list, info: DistInfo) -> list:
    """This rank's share of a list: items[rank::world_size] (every item exactly once over all ranks)."""
    return items[info.rank :: info.world_size]


def sum_across(value: float, info: DistInfo, device: torch.device) -> float:
    """Sum a number over ranks (e.g. images written); the value itself when not distributed."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def gather_in_order(items: list, info: DistInfo) -> list | None:
    """On rank 0: every rank's `shard` share merged back into the original order; None on other ranks."""
    if not info.enabled:
        return items
    shares: list | None = [None] * info.world_size if info.is_main else None
    dist.gather_object(items, shares, dst=0)
    if not info.is_main:
        return None
    merged = []
    for i in range(max(len(s) for s in shares)):
        merged += [s[i] for s in shares if i < len(s)]
    return merged
