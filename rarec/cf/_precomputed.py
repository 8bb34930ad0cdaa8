"""Embeddings from any other model, handed in as arrays or a safetensors file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ..data import InteractionLog
from ._base import CFBackbone
from ._bpr import history_mean
from ._histories import SequenceStore


@dataclass
class PrecomputedConfig:
    """Where precomputed embeddings came from (recorded, not re-read, after ``fit``).

    Attributes
    ----------
    path : str or None
        The safetensors file, when the embeddings were given as one.
    """

    path: str | None = None


class PrecomputedTables(nn.Module):
    def __init__(self, items: torch.Tensor, users: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("items", items)  # (n_items, d)
        self.register_buffer("users", users)  # (n_users, K, d), or (0, K, d) without user vectors


class Precomputed(CFBackbone):
    """User and item embeddings computed by any other model.

    Parameters
    ----------
    item_embeddings : array of shape (n_items, d), optional
        Row ``i`` belongs to item index ``i`` of the interaction log
        (``log.items.encode(raw_ids)`` gives the indices).
    user_embeddings : array of shape (n_users, d) or (n_users, K, d), optional
        Row ``u`` belongs to user index ``u``; several vectors per user act as
        K interests. Without them, every user gets the fallback.
    path : path-like, optional
        A safetensors file holding ``item_embeddings`` (and optionally
        ``user_embeddings``) instead of the arrays.

    Notes
    -----
    Transductive, with the same fallback as :class:`BPR`: a user without a
    vector is represented by the mean embedding of the items in their history.
    Shapes and finiteness are checked against the log in ``fit``.
    """

    name = "precomputed"
    inductive = False
    config_class = PrecomputedConfig

    def __init__(self, item_embeddings=None, user_embeddings=None, path: str | os.PathLike | None = None,
                 training=None) -> None:
        if isinstance(item_embeddings, PrecomputedConfig):  # the form load() uses
            config, item_embeddings = item_embeddings, None
        else:
            config = PrecomputedConfig(path=None if path is None else str(path))
        super().__init__(config, training)
        self._items = item_embeddings
        self._users = user_embeddings

    @property
    def n_interests(self) -> int:
        return int(self.module_.users.shape[1]) if hasattr(self, "module_") else 1

    def _arrays(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        items, users = self._items, self._users
        if self.config.path is not None and items is None:
            path = Path(self.config.path)
            if not path.exists():
                raise FileNotFoundError(f"no such embeddings file: {path}")
            try:
                tensors = load_file(str(path))
            except (SafetensorError, OSError) as exc:
                raise ValueError(f"{path} is not a readable safetensors file ({exc}).") from None
            if "item_embeddings" not in tensors:
                raise ValueError(f"{path} has no 'item_embeddings' tensor; it holds {sorted(tensors)}.")
            items, users = tensors["item_embeddings"], tensors.get("user_embeddings")
        if items is None:
            raise ValueError("Precomputed needs item_embeddings (an array) or path (a safetensors file).")
        items = torch.as_tensor(np.asarray(items, dtype=np.float32) if not isinstance(items, torch.Tensor) else items)
        if users is not None:
            users = torch.as_tensor(np.asarray(users, dtype=np.float32) if not isinstance(users, torch.Tensor) else users)
        return items.float(), None if users is None else users.float()

    def fit(self, train: InteractionLog, valid: InteractionLog | None = None) -> Precomputed:
        """Check the embeddings against ``train`` and keep them (nothing is trained)."""
        items, users = self._arrays()
        if items.ndim != 2:
            raise ValueError(f"item_embeddings must be 2-D (n_items, d); got shape {tuple(items.shape)}.")
        if items.shape[0] != train.n_items:
            raise ValueError(
                f"item_embeddings has {items.shape[0]} rows but the interaction log has {train.n_items} items; "
                "row i must belong to item index i."
            )
        if not torch.isfinite(items).all():
            row = int(torch.nonzero(~torch.isfinite(items).all(1))[0])
            raise ValueError(f"item_embeddings row {row} holds NaN or infinite values.")
        dim = items.shape[1]
        if users is None:
            users = torch.zeros(0, 1, dim)
        else:
            users = users[:, None, :] if users.ndim == 2 else users
            if users.ndim != 3 or users.shape[0] != train.n_users or users.shape[2] != dim:
                raise ValueError(
                    f"user_embeddings must have shape (n_users={train.n_users}, d={dim}) or "
                    f"(n_users, K, d={dim}); got {tuple(users.shape)}."
                )
            if not torch.isfinite(users).all():
                row = int(torch.nonzero(~torch.isfinite(users.flatten(1)).all(1))[0])
                raise ValueError(f"user_embeddings row {row} holds NaN or infinite values.")
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.train_sequences_ = SequenceStore(train.user_sequences())
        self.device_ = torch.device("cpu")
        self.module_ = PrecomputedTables(items, users).eval()
        self.training_log_ = []
        return self

    def _load_extra(self, tensors: dict[str, torch.Tensor]) -> None:
        self._items, self._users = tensors["module.items"], tensors["module.users"]

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        return PrecomputedTables(torch.as_tensor(self._items), torch.as_tensor(self._users))

    def _item_table(self) -> torch.Tensor:
        return self.module_.items

    def _epoch_batches(self, store: SequenceStore, generator: torch.Generator) -> Iterator:
        return iter(())

    def _batch_loss(self, batch) -> torch.Tensor:  # pragma: no cover - never trained
        raise NotImplementedError

    def _encode(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        table = self.module_.items
        n_known = self.module_.users.shape[0]
        k = self.module_.users.shape[1]
        out = history_mean(table, histories)[:, None, :].repeat(1, k, 1)  # (n, K, d)
        known = (users >= 0) & (users < n_known)
        if known.any():
            out[torch.as_tensor(known)] = self.module_.users[torch.as_tensor(users[known])]
        return out
