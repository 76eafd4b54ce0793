"""Multi-process training under ``torchrun``: what the engine needs from ``torch.distributed``
(Chapter 4).

``torchrun`` starts one process per device and tells each its place through environment
variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). Under it,
``coursekit.train.fit`` joins the process group (``gloo`` on the CPU, ``nccl`` on CUDA), wraps
the model in ``DistributedDataParallel`` and gives each process its share of every batch; run
without ``torchrun``, nothing here does anything. There is no launcher of our own:

    torchrun --standalone --nproc_per_node=2 -m coursekit train vae --epochs 2 --out runs/vae
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Dist", "launched_by_torchrun", "session"]


def launched_by_torchrun() -> bool:
    """True in a process that ``torchrun`` started as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``rank`` of ``world_size`` (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and prints."""
        return self.rank == 0

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over all processes (``t`` itself in a single process)."""
        if not self.active:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def decide(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every process, so that all stop (or save) together."""
        if not self.active:
            return flag
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])

    def gather(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def current() -> Dist:
    """The ``Dist`` of an initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size())
    return Dist()


@contextmanager
def session(device: torch.device):
    """Join the process group if ``torchrun`` started this process and no one has yet; yields
    ``(Dist, device)``, where under CUDA the device becomes this process's own GPU
    (``cuda:LOCAL_RANK``). Leaves the group on exit only if it joined it."""
    joined = False
    if launched_by_torchrun() and not (dist.is_available() and dist.is_initialized()):
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        joined = True
    elif dist.is_available() and dist.is_initialized() and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        yield current(), device
    finally:
        if joined:
            dist.destroy_process_group()
