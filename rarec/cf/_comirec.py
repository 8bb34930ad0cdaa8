"""ComiRec-SA (Cen et al., KDD 2020): K interest vectors by self-attention over the history."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import check_int, check_option
from ._base import CFBackbone
from ._histories import PAD, SequenceStore, next_item_positions, pad_histories
from ._losses import draw_negatives, next_item_loss


@dataclass
class ComiRecConfig:
    """Architecture of :class:`ComiRec`.

    Attributes
    ----------
    dim : int
        Embedding size.
    n_interests : int
        Interest vectors per user (K).
    max_len : int
        Most recent items a user is described by.
    n_negatives : int or None
        Items sampled uniformly per batch for the sampled softmax (shared by
        the batch). ``None``: a full softmax over the catalogue instead, which
        trained clearly better on MovieLens-100K (docs/benchmarks.md) and is
        affordable up to tens of thousands of items.
    selection : {"hard", "soft"}
        Which interest represents the user for a training target: ``"hard"``,
        the interest closest to the target (ComiRec's argmax; only that interest
        learns from the sample), or ``"soft"``, all interests weighted by the
        softmax of their scores for the target (label-aware attention as in MIND).
    """

    dim: int = 64
    n_interests: int = 4
    max_len: int = 50
    n_negatives: int | None = 256
    selection: str = "hard"

    def __post_init__(self) -> None:
        for name in ("dim", "n_interests", "max_len"):
            check_int(getattr(self, name), name, "ComiRecConfig", 1)
        if self.n_negatives is not None:
            check_int(self.n_negatives, "n_negatives", "ComiRecConfig", 1)
        check_option(self.selection, "selection", "ComiRecConfig", ("hard", "soft"))


class ComiRecNetwork(nn.Module):
    """Self-attentive multi-interest extraction.

    For history embeddings ``X`` (L, d): ``A = softmax_L(W2 tanh(W1 (X + P)))``
    gives K attention distributions over the history, and the interests are
    ``A^T X`` (K, d). Positions ``P`` only steer the attention, as in ComiRec.
    """

    def __init__(self, n_items: int, config: ComiRecConfig) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, config.dim, padding_idx=PAD)
        self.position_embedding = nn.Embedding(config.max_len, config.dim)
        self.attention_hidden = nn.Linear(config.dim, 4 * config.dim)
        self.attention_heads = nn.Linear(4 * config.dim, config.n_interests, bias=False)
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Interests (B, K, d) of right-padded histories (B, L)."""
        x = self.item_embedding(items)  # (B, L, d)
        positions = torch.arange(items.shape[1], device=items.device)
        h = torch.tanh(self.attention_hidden(x + self.position_embedding(positions)[None]))  # (B, L, 4d)
        logits = self.attention_heads(h)  # (B, L, K)
        logits = logits.masked_fill((items == PAD)[..., None], -1e9)
        weights = torch.softmax(logits, dim=1)  # (B, L, K): a distribution over the history per interest
        return weights.transpose(1, 2) @ x  # (B, K, d)


class ComiRec(CFBackbone):
    """ComiRec-SA trained with a sampled softmax.

    Every next-item prediction of every training sequence is a sample: the
    previous ``max_len`` items predict the next one. In training, the interest
    closest to the target item represents the user (hard selection, as in
    ComiRec); it is scored against the target and ``n_negatives`` uniformly
    sampled items. At inference every interest is returned, and an item's
    score is its best dot product over the interests.

    Parameters
    ----------
    config : ComiRecConfig, optional
    training : TrainingConfig, optional
    """

    name = "comirec"
    config_class = ComiRecConfig

    def __init__(self, config: ComiRecConfig | None = None, training=None) -> None:
        super().__init__(config if config is not None else ComiRecConfig(), training)

    @property
    def n_interests(self) -> int:
        return self.config.n_interests

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        return ComiRecNetwork(n_items, self.config)

    def _item_table(self) -> torch.Tensor:
        return self.module_.item_embedding.weight[1:]

    def _samples_per_epoch(self, store: SequenceStore) -> int:
        return len(next_item_positions(store.lengths)[0])  # every next-item target is a sample

    def _epoch_batches(self, store: SequenceStore, generator: torch.Generator) -> Iterator[tuple]:
        users, ends = next_item_positions(store.lengths)  # every next-item target is a sample
        width = self.config.max_len
        for u, e, lengths in store.shuffled_batches(users, ends, self.training.batch_size, width, generator):
            history = store.windows(u, e, lengths, width)[:, : int(lengths.max())]  # (B, L)
            target = torch.from_numpy(store.flat[store.indptr[u] + e])  # (B,)
            negatives = draw_negatives(self.config.n_negatives, self.n_items_, generator, self.device_)
            yield history.to(self.device_), target.to(self.device_), negatives

    def _batch_loss(self, batch: tuple) -> torch.Tensor:
        history, target, negatives = batch
        interests = self.module_(history)  # (B, K, d)
        table = self._item_table()
        target_emb = table[target]  # (B, d)
        fit = (interests @ target_emb[:, :, None]).squeeze(-1)  # (B, K): each interest's score for the target
        if self.config.selection == "hard":
            user = interests[torch.arange(len(target)), fit.argmax(dim=1)]  # (B, d)
        else:
            user = (torch.softmax(fit, dim=1)[:, :, None] * interests).sum(1)  # (B, d)
        return next_item_loss(user, target, table, negatives)

    def _encode(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        items, _ = pad_histories(histories, self.config.max_len)
        return self.module_(items.to(self.device_))  # (n, K, d)
