"""Data-parallel training across processes (``torchrun``), and the single-process default.

The same training code runs alone or under ``torchrun --nproc_per_node=N``: torchrun
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the process group uses gloo on the CPU
and nccl on CUDA. Every rank holds the whole (small) dataset in memory and takes its
own slice of each global batch, so no sampler object is needed; metrics are summed
across ranks; rank 0 alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segcore.common.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank: this process's number, ``0..world_size-1``.
        world_size: number of processes.
        local_rank: number on this machine (selects the GPU).
        device: where the model runs.
        owns_group: whether :func:`setup` created the process group (and so ends it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, draws progress and calls callbacks."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> DistContext:
    """Join the process group when launched by torchrun; otherwise a one-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(0, 1, 0, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, dev, owns_group=owns)


def teardown(ctx: DistContext) -> None:
    """End the process group if :func:`setup` started it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (no-op in one process); returns it."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_slice(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of a global batch of sample indices: contiguous equal slices.

    A global batch of ``world_size * b`` indices gives rank ``r`` the indices
    ``r*b .. (r+1)*b - 1``; together the ranks see the batch one process would see.
    """
    per_rank = len(batch) // world_size
    return batch[rank * per_rank : (rank + 1) * per_rank]
