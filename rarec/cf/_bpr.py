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
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)


def history_mean(table: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
    """Mean item embedding of each history: the fallback user vector (n, d)."""
    return torch.stack([table[torch.as_tensor(h, device=table.device)].mean(0) for h in histories])


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

    def _samples_per_epoch(self, store: SequenceStore) -> int:
        return len(store.flat)  # every interaction is a positive

    def _epoch_batches(self, store: SequenceStore, generator: torch.Generator) -> Iterator[tuple]:
        users = np.repeat(np.arange(len(store.lengths)), store.lengths)
        positives = store.flat
        seen = set((users * self.n_items_ + positives).tolist())
        order = torch.randperm(len(users), generator=generator).numpy()
        size = self.training.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            u, i = users[rows], positives[rows]
            j = torch.randint(0, self.n_items_, (len(rows),), generator=generator).numpy()
            for _ in range(100):  # resample negatives the user has interacted with
                clash = np.fromiter(((a * self.n_items_ + b) in seen for a, b in zip(u, j)), bool, len(u))
                if not clash.any():
                    break
                j[clash] = torch.randint(0, self.n_items_, (int(clash.sum()),), generator=generator).numpy()
            yield tuple(torch.from_numpy(a).to(self.device_) for a in (u, i, j))

    def _batch_loss(self, batch: tuple) -> torch.Tensor:
        u, i, j = batch
        user = self.module_.user_embedding(u)  # (B, d)
        diff = (user * self.module_.item_embedding(i)).sum(-1) - (user * self.module_.item_embedding(j)).sum(-1)
        return -F.logsigmoid(diff).mean()

    def _encode(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        table = self._item_table()
        known = (users >= 0) & (self.train_sequences_.lengths[np.maximum(users, 0)] > 0)
        out = history_mean(table, histories)  # (n, d)
        if known.any():
            idx = torch.as_tensor(users[known], device=table.device)
            out[torch.as_tensor(known, device=table.device)] = self.module_.user_embedding(idx)
        return out[:, None, :]  # (n, 1, d)
