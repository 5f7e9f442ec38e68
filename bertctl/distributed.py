"""Which process this is, among how many: the one place that reads it.

Under torchrun or `accelerate launch` every process runs the same command; only rank 0
writes files and prints. The launcher's environment (RANK, WORLD_SIZE) answers before
any process group exists and without importing torch, so the CLI's error printing and
the run folder can ask it; torch and accelerate are imported only by the functions that
need a process group, which keeps `bertctl --help` fast.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """How many processes the launcher started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank as the launcher set it (0 without one)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 (or a single process): the only one that writes files and prints."""
    return rank() == 0


def process_state():
    """accelerate's PartialState (rank, world size, barriers), made the same way everywhere.

    Why `cpu=`: on a machine without a GPU, accelerate runs every process started by
    torchrun as a separate single-process job unless told it is a CPU job; the first
    PartialState made in a process decides for the whole process, so everyone makes it here."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=world_size() > 1 and not torch.cuda.is_available())


def wait_for_everyone() -> None:
    """A barrier across all processes (starting the process group if nothing did yet);
    nothing to wait for with one process."""
    if world_size() > 1:
        process_state().wait_for_everyone()


def group_rank() -> int:
    """This process's rank in the torch.distributed process group (0 when there is none):
    the rank the collectives gather to, for code that runs them."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
