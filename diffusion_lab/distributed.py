r"""Data-parallel training under ``torchrun``: PyTorch DistributedDataParallel, nothing home-made.

    torchrun --nproc_per_node=2 -m diffusion_lab train --dataset mnist --batch-size 256 ...

``torchrun`` starts the processes and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``; :func:`setup` joins the process group (``gloo`` on CPU,
``nccl`` on CUDA, one GPU per process: ``cuda:LOCAL_RANK``).

How a step is split. ``--batch-size`` B is the **global** batch, the same number as in a
single-process run; each of the W processes takes B/W of it (B must be divisible by W).
Every process draws the whole global batch — indices, times, noise, label-dropout mask —
from the same CPU generator seeded with ``seed``, and keeps its own rows
``[rank·B/W, (rank+1)·B/W)``. Each computes the mean loss of its rows; DDP averages the
gradients over processes, so the update uses

    ∇L = (1/W) Σ_r (W/B) Σ_{i ∈ rows(r)} ∇ℓ_i = (1/B) Σ_i ∇ℓ_i,

the single-process gradient of the same global batch; clipping, AdamW and the EMA then
run identically in every process, so all hold the same weights. The result equals a
single-process run with batch B up to the order of floating-point summation (tested:
tests/test_distributed.py). Exception: dropout layers (off by default) draw their masks
per process, so with dropout > 0 the runs differ in law-preserving ways only.

Checkpoints and the model card are written by rank 0 only; the others wait at a barrier
before and after, and all read the same checkpoint to resume. The recorded loss history
is the global-batch loss (the mean of the processes' losses, all-reduced every
``log_every`` steps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["World", "world", "setup", "teardown", "local_rows", "wrap", "mean_over_world",
           "barrier"]


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes (1 = not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The current process group, or a single process when none is initialised."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer (torchrun sets it), "
                         f"got {value!r}") from None


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (if ``WORLD_SIZE`` > 1) and return the
    world with the device this process trains on (``cuda`` → ``cuda:LOCAL_RANK``)."""
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        return world(), device
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world(), device


def teardown() -> None:
    """Leave the process group (a no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(w: World) -> None:
    """Wait for every process (a no-op for one process)."""
    if w.distributed:
        dist.barrier()


def local_rows(batch_size: int, w: World) -> slice:
    """The rows of a global batch of ``batch_size`` this process trains on."""
    if batch_size % w.size:
        raise ValueError(f"batch_size ({batch_size}) is the global batch and must be divisible "
                         f"by the number of processes ({w.size})")
    per = batch_size // w.size
    return slice(w.rank * per, (w.rank + 1) * per)


def wrap(net: nn.Module, w: World, device: torch.device) -> nn.Module:
    """``net`` itself for one process, else ``DistributedDataParallel(net)`` (which averages
    gradients over processes in ``backward``)."""
    if not w.distributed:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def mean_over_world(values: Tensor, w: World) -> Tensor:
    """The element-wise mean of ``values`` over processes (``values`` itself for one)."""
    if not w.distributed:
        return values
    total = values.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / w.size
