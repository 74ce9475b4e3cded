"""Data-parallel training (DDP) on top of `train.engine.fit`: gloo on CPU, nccl on GPU.

Every process holds all the training tensors and runs the same `fit`. The engine's shuffle
order is a pure function of (seed, epoch), so every process draws the same global batches;
each one keeps the slice `batch[rank::world]` of every batch, and DDP averages the gradients,
which is the gradient of the mean loss over the global batch: with equal slices the update is
the one a single process would make with the whole batch (batch norm aside: on a GPU the
layers are synchronised (SyncBatchNorm); on a CPU each process normalises over its own
slice, as PyTorch has no CPU SyncBatchNorm).

Launch a script that calls `fit_data_parallel` with torchrun, e.g.

    torchrun --standalone --nproc_per_node 2 benchmarks/cifar_speedrun.py

Checkpoint/resume is the single-process engine's; here the finished model is returned and
process 0 evaluates, logs and saves. Early stopping is refused: every process must run the
same number of steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dlslab.errors import UsageError
from dlslab.train.engine import Batch, History, LossFn, fit


def launched_by_torchrun() -> bool:
    """True when this process is one of several started by torchrun (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_process_group(device: torch.device, rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Join the process group (gloo on CPU, nccl on CUDA); rank and world size come from
    torchrun's environment unless given. Returns (rank, world_size)."""
    if not dist.is_available():
        raise UsageError("this PyTorch build has no torch.distributed; data-parallel training needs it")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {}
        if rank is not None and world_size is not None:
            kwargs = {"rank": rank, "world_size": world_size}
        dist.init_process_group(backend, **kwargs)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return dist.get_rank(), dist.get_world_size()


def shard(batch: Sequence[torch.Tensor], rank: int, world_size: int) -> list[torch.Tensor]:
    """This process's slice of a global batch: every world_size-th row from `rank`."""
    return [t[rank::world_size] for t in batch]


def fit_data_parallel(model: nn.Module, train: Batch, loss_fn: LossFn, *, batch_size: int,
                      transform: Callable[[Batch], Batch] | None = None,
                      evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                      **fit_kwargs: Any) -> History:
    """`fit` across the process group: `batch_size` is the global batch, which must divide by
    the number of processes. `evaluate` runs on process 0 only, on the unwrapped model."""
    if not dist.is_initialized():
        raise UsageError("fit_data_parallel() needs a process group: call init_process_group() first "
                         "(or launch with torchrun)")
    for key in ("patience", "run", "step"):
        if fit_kwargs.get(key) is not None:
            raise UsageError(f"fit_data_parallel() does not take {key}=: every process must run the same "
                             "steps (no early stopping, no per-process checkpoints, loss_fn only)")
    rank, world = dist.get_rank(), dist.get_world_size()
    if batch_size % world:
        raise UsageError(f"batch_size {batch_size} does not divide by the {world} processes; "
                         "choose a multiple so every process gets an equal slice")
    device = next(model.parameters()).device
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def local(batch: Batch) -> Batch:
        part = shard(batch, rank, world)
        return transform(part) if transform is not None else part

    def evaluate_rank0(_: nn.Module) -> dict[str, float]:
        return evaluate(model) if rank == 0 else {}

    quiet = rank != 0
    history = fit(wrapped, train, loss_fn, batch_size=batch_size, transform=local,
                  evaluate=evaluate_rank0 if evaluate is not None else None,
                  drop_last=fit_kwargs.pop("drop_last", True),
                  progress=fit_kwargs.pop("progress", True) and not quiet,
                  verbose=fit_kwargs.pop("verbose", True) and not quiet, **fit_kwargs)
    return history
