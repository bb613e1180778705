"""torch.distributed set-up for `torchrun`: one process group per run, gloo on CPU, nccl on GPU."""

from __future__ import annotations

import contextlib
import os

import torch


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside torch.distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@contextlib.contextmanager
def distributed_session(device: str = "cpu"):
    """Initialize the process group when launched by torchrun (WORLD_SIZE > 1); tear it down after."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or torch.distributed.is_initialized():
        yield
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    torch.distributed.init_process_group(backend)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()
