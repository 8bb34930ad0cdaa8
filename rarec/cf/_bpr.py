"""BPR matrix factorisation (Rendle et al., UAI 2009), and the fallback for unknown users."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int
from ._base import CFBackbone
from ._histories import SequenceStore
from ._training import TrainingConfig


@dataclass
class BPRConfig:
    """Architecture of :class:`BPR`.

    Attributes
    ----------
    dim : int
        Embedding size.
    """

    dim: int = 64

    def __post_init__(self) -> None:
        check_int(self.dim, "dim", "BPRConfig", 1)


class BPRNetwork(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        # sparse gradients: a step touches only the batch's rows (see BPR._optimizer)
        self.user_embedding = nn.Embedding(n_users, dim, sparse=True)
        self.item_embedding = nn.Embedding(n_items, dim, sparse=True)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is in ``sorted_keys`` (ascending), as a boolean array."""
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def history_mean(table: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
    """Mean item embedding of each history: the fallback user vector (n, d)."""
    lengths = torch.as_tensor([len(h) for h in histories], device=table.device)
    flat = torch.as_tensor(np.concatenate(histories) if histories else np.zeros(0, np.int64), device=table.device)
    rows = torch.repeat_interleave(torch.arange(len(histories), device=table.device), lengths)
    sums = torch.zeros(len(histories), table.shape[1], dtype=table.dtype, device=table.device)
    return sums.index_add_(0, rows, table[flat]) / lengths[:, None].to(table.dtype)


class BPR(CFBackbone):
    """Matrix factorisation trained with the BPR pairwise loss.

    One sampled negative per training interaction, drawn uniformly among the
    items the user has not interacted with. Transductive: a user known from
    training gets their learned vector. **Fallback**: a user unknown to
    training (index ``-1``, or a user with no training interaction) is
    represented by the mean embedding of the items in their history.

    Parameters
    ----------
    config : BPRConfig, optional
    training : TrainingConfig, optional
        Defaults here: batch 2048, patience 30 (validation on a few hundred
        users is noisy; a shorter patience stops BPR far too early).
        Trained with lazy Adam (``torch.optim.SparseAdam``: a step updates
        only the rows of the batch's users and items), so an epoch costs the
        same however many users there are; ``weight_decay`` is BPR's own L2
        penalty on the batch's user and item vectors.
    """

    name = "bpr"
    inductive = False
    config_class = BPRConfig

    def __init__(self, config: BPRConfig | None = None, training: TrainingConfig | None = None) -> None:
        super().__init__(
            config if config is not None else BPRConfig(),
            training if training is not None else TrainingConfig(batch_size=2048, patience=30),
        )

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        return BPRNetwork(n_users, n_items, self.config.dim)

    def _item_table(self) -> torch.Tensor:
        return self.module_.item_embedding.weight

    def _optimizer(self) -> torch.optim.Optimizer:
        # Lazy Adam: only the rows a batch uses are updated, so a step costs the batch, not the whole tables
        # (a dense Adam step over 200,000 users x 64 took most of an epoch's time on a 5 M-row log).
        return torch.optim.SparseAdam(list(self.module_.parameters()), lr=self.training.lr)

    def _samples_per_epoch(self, store: SequenceStore) -> int:
        return len(store.flat)  # every interaction is a positive

    def _epoch_batches(self, store: SequenceStore, generator: torch.Generator) -> Iterator[tuple]:
        users = np.repeat(np.arange(len(store.lengths)), store.lengths)
        positives = store.flat
        seen = np.unique(users * self.n_items_ + positives)  # sorted (user, item) keys, for a vectorised lookup
        order = torch.randperm(len(users), generator=generator).numpy()
        size = self.training.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            u, i = users[rows], positives[rows]
            j = torch.randint(0, self.n_items_, (len(rows),), generator=generator).numpy()
            for _ in range(100):  # resample negatives the user has interacted with
                clash = _contains(seen, u * self.n_items_ + j)
                if not clash.any():
                    break
                j[clash] = torch.randint(0, self.n_items_, (int(clash.sum()),), generator=generator).numpy()
            yield tuple(torch.from_numpy(a).to(self.device_) for a in (u, i, j))

    def _batch_loss(self, batch: tuple) -> torch.Tensor:
        u, i, j = batch
        user, positive, negative = (self.module_.user_embedding(u), self.module_.item_embedding(i),
                                    self.module_.item_embedding(j))  # (B, d) each
        loss = -F.logsigmoid((user * positive).sum(-1) - (user * negative).sum(-1)).mean()
        if self.training.weight_decay:  # BPR's own L2 on the batch's parameters (SparseAdam has no weight decay)
            penalty = user.pow(2).sum(-1) + positive.pow(2).sum(-1) + negative.pow(2).sum(-1)  # (B,)
            loss = loss + self.training.weight_decay / 2 * penalty.mean()
        return loss

    def _encode(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        table = self._item_table()
        known = (users >= 0) & (self.train_sequences_.lengths[np.maximum(users, 0)] > 0)
        out = torch.empty(len(histories), table.shape[1], dtype=table.dtype, device=table.device)  # (n, d)
        if known.any():
            idx = torch.as_tensor(users[known], device=table.device)
            out[torch.as_tensor(known, device=table.device)] = self.module_.user_embedding(idx)
        if not known.all():
            unknown = np.flatnonzero(~known)
            out[torch.as_tensor(unknown, device=table.device)] = history_mean(table, [histories[r] for r in unknown])
        return out[:, None, :]  # (n, 1, d)
