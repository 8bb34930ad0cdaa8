"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the recent items."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validation import check_float, check_int
from ._base import CFBackbone
from ._histories import PAD, SequenceStore, pad_histories
from ._losses import draw_negatives, next_item_loss

logger = logging.getLogger(__name__)


@dataclass
class SASRecConfig:
    """Architecture of :class:`SASRec` (defaults follow RecBole 1.2.1).

    Attributes
    ----------
    dim : int
        Embedding and hidden size.
    n_layers : int
        Transformer blocks.
    n_heads : int
        Attention heads; must divide ``dim``.
    inner_dim : int
        Feed-forward width.
    dropout : float
        Dropout on embeddings, attention and feed-forward outputs.
    max_len : int
        Most recent items a user is described by.
    n_negatives : "auto", int or None
        ``None``: each position's softmax runs over the whole catalogue, as in
        RecBole. An int: over the target and that many items drawn uniformly
        per batch (shared by its positions), which makes an epoch on a large
        catalogue several times cheaper (docs/benchmarks.md, "CF stage at
        scale"). ``"auto"`` (default): the full softmax while one epoch scores
        at most 10**10 (target position, item) pairs, and 1,024 sampled items
        above that, where the full softmax would cost minutes per epoch more
        (MovieLens-100K and Amazon Beauty stay far below it; 5 M interactions
        over 20,000 items are far above). The choice is ``n_negatives_``
        after ``fit``; docs/cf.md gives the measurements behind it.
    """

    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_dim: int = 256
    dropout: float = 0.5
    max_len: int = 50
    n_negatives: int | None | str = "auto"

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "inner_dim", "max_len"):
            check_int(getattr(self, name), name, "SASRecConfig", 1)
        if self.n_negatives is not None and self.n_negatives != "auto":
            check_int(self.n_negatives, "n_negatives", "SASRecConfig", 1)
        if self.dim % self.n_heads:
            raise ValueError(f"SASRecConfig: dim ({self.dim}) must be divisible by n_heads ({self.n_heads}).")
        check_float(self.dropout, "dropout", "SASRecConfig", 0.0, 0.99)

    def negatives_for(self, n_items: int, n_positions: int) -> int | None:
        """Sampled items per batch for ``n_items`` items and ``n_positions`` targets per epoch (``None``: all)."""
        if self.n_negatives != "auto":
            return self.n_negatives
        return None if n_items * n_positions <= AUTO_FULL_SOFTMAX_MAX_SCORES else AUTO_NEGATIVES


#: With ``n_negatives="auto"``, the full softmax while an epoch scores at most this many (position, item) pairs
#: (about 100 s of a 2-core CPU per epoch: 9.6e10 pairs took 1,000 s more than a sampled softmax) ...
AUTO_FULL_SOFTMAX_MAX_SCORES = 10**10
#: ... and above it a sampled softmax over this many uniform items per batch.
AUTO_NEGATIVES = 1024


class SASRecNetwork(nn.Module):
    """Item + position embeddings, then post-norm causal transformer blocks."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items + 1, config.dim, padding_idx=PAD)  # row 0 = padding
        self.position_embedding = nn.Embedding(config.max_len, config.dim)
        self.norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.n_heads, config.inner_dim, config.dropout,
            activation="gelu", batch_first=True, norm_first=False, layer_norm_eps=1e-12,
        )
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # RecBole's initialisation: N(0, 0.02) for every linear map and embedding.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, std=0.02)
            nn.init.zeros_(module.in_proj_bias)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, d) for right-padded item windows (B, L) (index + 1, 0 = padding).

        Padding only ever follows real items, so the causal mask alone keeps
        every real position from seeing it.
        """
        length = items.shape[1]
        positions = torch.arange(length, device=items.device)  # (L,)
        x = self.item_embedding(items) + self.position_embedding(positions)[None]  # (B, L, d)
        x = self.dropout(self.norm(x))
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=items.device)  # (L, L)
        return self.blocks(x, mask=causal, is_causal=True)  # (B, L, d)


class SASRec(CFBackbone):
    """SASRec trained with softmax cross-entropy over all items (a sampled one when that costs too much).

    Each user's training sequence is cut, from its end, into windows of at
    most ``max_len`` items; every position of a window predicts the next item
    (all positions train at once, as in the original paper). The user
    embedding is the hidden state at the last position of the most recent
    ``max_len`` items, so any history can be embedded (inductive).

    Parameters
    ----------
    config : SASRecConfig, optional
    training : TrainingConfig, optional
        Batches count windows; defaults here: batch 128, patience 10.

    Attributes
    ----------
    n_negatives_ : int or None
        After ``fit``: the sampled items per batch the training used
        (``None``: the full softmax), as ``config.n_negatives`` chose.

    Examples
    --------
    >>> from rarec.cf import SASRec, SASRecConfig, TrainingConfig
    >>> model = SASRec(SASRecConfig(dim=32), TrainingConfig(epochs=2, verbose=False))
    """

    name = "sasrec"
    config_class = SASRecConfig

    def __init__(self, config: SASRecConfig | None = None, training=None) -> None:
        super().__init__(config if config is not None else SASRecConfig(), training)

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        positions = int(np.maximum(np.asarray(self.train_sequences_.lengths) - 1, 0).sum())  # targets per epoch
        self.n_negatives_ = self.config.negatives_for(n_items, positions)
        if self.config.n_negatives == "auto" and self.n_negatives_ is not None:
            logger.info("sasrec: %d targets per epoch x %d items is over %.0e scores: a sampled softmax of %d items "
                        "per batch (n_negatives='auto'; n_negatives=None forces the full softmax)", positions,
                        n_items, AUTO_FULL_SOFTMAX_MAX_SCORES, self.n_negatives_)
        return SASRecNetwork(n_items, self.config)

    def _item_table(self) -> torch.Tensor:
        return self.module_.item_embedding.weight[1:]  # drop the padding row

    def _samples_per_epoch(self, store: SequenceStore) -> int:
        return len(_training_windows(store, self.config.max_len)[0])

    def _epoch_batches(self, store: SequenceStore, generator: torch.Generator) -> Iterator[tuple]:
        users, ends = _training_windows(store, self.config.max_len)
        for u, e, lengths in store.shuffled_batches(users, ends, self.training.batch_size, self.config.max_len,
                                                    generator):
            # W: the batch's longest window, not max_len: columns of padding alone change no real position's
            # output (right padding, causal mask) and would only cost time
            width = int(lengths.max())
            inputs = store.windows(u, e, lengths, width)  # (B, W): items end-length .. end-1
            targets = store.windows(u, e + 1, lengths, width)  # (B, W): the next item at each position
            negatives = draw_negatives(self.n_negatives_, self.n_items_, generator, self.device_)
            yield inputs.to(self.device_), targets.to(self.device_), negatives

    def _batch_loss(self, batch: tuple) -> torch.Tensor:
        inputs, targets, negatives = batch
        hidden = self.module_(inputs)  # (B, W, d)
        mask = targets != PAD  # (B, W)
        return next_item_loss(hidden[mask], targets[mask] - 1, self._item_table(), negatives)

    def _encode(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        items, lengths = pad_histories(histories, self.config.max_len)  # (n, L), (n,)
        hidden = self.module_(items.to(self.device_))  # (n, L, d)
        last = hidden[torch.arange(len(histories)), lengths.to(self.device_) - 1]  # (n, d)
        return last[:, None, :]  # (n, 1, d)


def _training_windows(store: SequenceStore, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(user, end) of every training window: input items ``seq[end-len:end]``, targets one step later.

    Windows tile each sequence's inputs ``seq[:-1]`` from the end backwards, so the
    most recent window is always complete and every next-item target is used once.
    """
    users, ends = [], []
    for u, n in enumerate(store.lengths):
        for end in range(int(n) - 1, 0, -max_len):
            users.append(u)
            ends.append(end)
    return np.asarray(users, dtype=np.int64), np.asarray(ends, dtype=np.int64)
