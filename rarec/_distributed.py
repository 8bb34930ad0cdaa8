"""Data-parallel alignment training on PyTorch's distributed engine (``torchrun``).

``torchrun --nproc_per_node N -m rarec fit ...`` (or any launcher that sets
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) starts N
processes. Each one runs the whole fit; :class:`Group` makes them share the
work of the alignment stage:

- every rank draws the same global batches (same seed) of ``batch_size x N``
  samples and takes its own slice of the users;
- the batch's items are split across the ranks, each encodes its share, and
  the vectors are gathered with gradients (``torch.distributed.nn``), so
  every user is scored against every item of the global batch, exactly as
  one process with the global batch would;
- the alignment module is wrapped in ``DistributedDataParallel``, which
  averages the gradients; the result equals one process with the global
  batch (tested with two gloo processes on the CPU);
- the final catalogue encoding is split across ranks and gathered in item order;
- only rank 0 writes checkpoints (and ``rarec fit`` saves on rank 0 only).

:func:`is_main_process` tells a caller (the CLI) whether this process
reports and saves.

Without those environment variables (or with ``WORLD_SIZE=1``) nothing here
does anything: a single process runs as before.
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


class Group:
    """The ranks of a data-parallel fit: ``rank`` and ``size`` (1 when not distributed)."""

    def __init__(self, rank: int = 0, size: int = 1) -> None:
        self.rank, self.size = rank, size

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> Group:
        """Join the process group a launcher such as ``torchrun`` describes in the environment, if any.

        The backend is NCCL for CUDA devices and gloo otherwise. An already
        initialised default group is used as it is.
        """
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1 or not dist.is_available():
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
            # A group rarec started is also ended by rarec, while the interpreter is still whole: left to
            # interpreter shutdown, gloo's worker threads can outlive it and abort the process.
            atexit.register(_destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size())

    def local_device(self, device: torch.device) -> torch.device:
        """A plain ``cuda`` becomes this rank's GPU, ``cuda:LOCAL_RANK`` (one GPU per process)."""
        if self.active and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
            torch.cuda.set_device(device)
        return device

    def shard(self, values: np.ndarray) -> np.ndarray:
        """This rank's part of ``values``: every ``size``-th element from ``rank`` (parts differ by at most 1)."""
        return values[self.rank::self.size]

    def gather_rows(self, local: torch.Tensor, n_total: int) -> torch.Tensor:
        """Undo :meth:`shard` for rows of a tensor, keeping gradients: (n_total, ...) in the original order.

        Ranks pad their part to the same length (``all_gather`` needs equal
        shapes); the padding is dropped again.
        """
        if not self.active:
            return local
        width = -(-n_total // self.size)
        padded = torch.cat([local, local.new_zeros(width - len(local), *local.shape[1:])]) if len(local) < width \
            else local
        parts = torch.distributed.nn.functional.all_gather(padded)
        stacked = torch.stack(parts, 1)  # (width, size, ...): row j of rank r is element j * size + r
        return stacked.reshape(width * self.size, *local.shape[1:])[:n_total]

    def sharded(self, encode: Callable[[np.ndarray], torch.Tensor], n: int) -> torch.Tensor:
        """``encode(positions)`` for positions ``0..n-1``: split over the ranks and gathered in order (no
        gradients), or all in this process when not distributed."""
        if not self.active:
            return encode(np.arange(n))
        with torch.no_grad():
            return self.gather_rows(encode(self.shard(np.arange(n))), n)

    def same_value(self, value: int) -> int:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(tensor, 0)
        return int(tensor)

    def mean(self, value: float) -> float:
        """The mean of a number over the ranks."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor) / self.size

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers of ``module``."""
        if self.active:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` inside ``DistributedDataParallel`` (gradients averaged over the ranks), or as it is."""
        if not self.active:
            return module
        device = next(module.parameters()).device
        return nn.parallel.DistributedDataParallel(_Step(module), device_ids=[device] if device.type == "cuda"
                                                   else None)


class _Step(nn.Module):
    """Lets ``DistributedDataParallel`` wrap one training step: ``forward(step)`` returns ``step(module)``.

    The alignment module's step calls several of its methods (two towers, the
    alignment loss); DDP needs them behind one ``forward`` call per backward.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, step: Callable[[nn.Module], torch.Tensor]) -> torch.Tensor:
        return step(self.module)


def run_step(wrapped: nn.Module, step: Callable[[nn.Module], torch.Tensor], module: nn.Module) -> torch.Tensor:
    """The loss of ``step`` on ``module``, through ``wrapped`` (DDP) when distributed."""
    return wrapped(step) if isinstance(wrapped, nn.parallel.DistributedDataParallel) else step(module)


def is_main_process() -> bool:
    """Whether this process is rank 0 of a launched distributed job, or not part of one."""
    return int(os.environ.get("RANK", "0")) == 0


def _destroy_process_group() -> None:
    """End the default process group if it is still open (``atexit`` hook of :meth:`Group.from_environment`)."""
    if dist.is_initialized():
        dist.destroy_process_group()
