"""Where alignment training stands, as JSON-safe metadata and tensors: what a checkpoint of it holds."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .._early_stopping import EarlyStopping


@dataclasses.dataclass
class TrainingState:
    """The loop's counters, the running loss, the validation log and the early-stopping record."""

    stopping: EarlyStopping
    epoch: int = 1
    step: int = 0  # batches done in the current epoch
    global_step: int = 0
    total: float = 0.0  # summed loss of the current epoch
    seconds: float = 0.0  # training seconds of the current epoch so far
    best_fusion: float | None = None  # the validation's best score-fusion weight at the best epoch
    done: bool = False
    log: list = dataclasses.field(default_factory=list)
    batches: list[np.ndarray] | None = None  # the current epoch's batches (None between epochs)
    bank: torch.Tensor | None = None  # the catalogue bank's item vectors (negatives="catalogue"), on the device
    bank_step: int = -1  # the global step at which the bank was encoded

    _SCALARS = ("epoch", "step", "global_step", "total", "seconds", "best_fusion", "done", "log", "bank_step")

    def to_checkpoint(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(metadata, tensors)`` that :meth:`from_checkpoint` turns back into this state."""
        optimizer_meta, tensors = optimizer_state(optimizer)
        tensors.update({f"aligner.{k}": v for k, v in module.state_dict().items()})
        if self.stopping.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.stopping.best_state.items()})
        if self.batches is not None:
            tensors.update(_pack_batches(self.batches))
        if self.bank is not None:  # saved so that a resumed fit scores against the same stale bank
            tensors["bank"] = self.bank
        meta = {name: getattr(self, name) for name in self._SCALARS}
        meta.update(best=self.stopping.best, waited=self.stopping.waited, optimizer=optimizer_meta,
                    numpy_rng=rng.bit_generator.state)
        return meta, tensors

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor], module: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, rng: np.random.Generator, patience: int) -> TrainingState:
        """Restore the module, the optimizer and the random state in place; return the loop's state."""
        module.load_state_dict({k.removeprefix("aligner."): v for k, v in tensors.items() if k.startswith("aligner.")})
        restore_optimizer(optimizer, meta["optimizer"], tensors)
        rng.bit_generator.state = meta["numpy_rng"]
        best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")}
        stopping = EarlyStopping(patience, best=meta["best"], waited=meta["waited"], best_state=best or None)
        state = cls(stopping, **{name: meta[name] for name in cls._SCALARS})
        state.batches = _unpack_batches(tensors) if "batches.flat" in tensors else None
        state.bank = tensors.get("bank")
        return state


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimizer's state as JSON-safe metadata and tensors."""
    full = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in full["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return {"param_groups": full["param_groups"], "scalars": scalars}, tensors


def restore_optimizer(optimizer: torch.optim.Optimizer, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _pack_batches(batches: list[np.ndarray]) -> dict[str, torch.Tensor]:
    flat = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    sizes = np.array([len(b) for b in batches], dtype=np.int64)
    return {"batches.flat": torch.from_numpy(flat.astype(np.int64)), "batches.sizes": torch.from_numpy(sizes)}


def _unpack_batches(tensors: dict[str, torch.Tensor]) -> list[np.ndarray]:
    flat, sizes = tensors["batches.flat"].numpy(), tensors["batches.sizes"].numpy()
    return np.split(flat, np.cumsum(sizes)[:-1]) if len(sizes) else []
