"""Item histories as padded tensors: validation, padding and window gathering.

Backbones store item ``i`` at embedding row ``i + 1``; row 0 is padding.
Windows are right-padded: real items first, then zeros, so a causal model
never sees padding before a real item and the last real position is
``length - 1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

PAD = 0


def check_histories(histories: Sequence[Sequence[int]] | Sequence[np.ndarray], n_items: int) -> list[np.ndarray]:
    """Validate histories of item indices; raise a ``ValueError`` naming the first bad one."""
    if isinstance(histories, np.ndarray) and histories.ndim == 1 and histories.dtype != object:
        raise ValueError("histories must be a sequence of item-index sequences (one per user); got a flat array.")
    out = []
    for n, hist in enumerate(histories):
        arr = np.asarray(hist)
        if arr.size == 0:
            raise ValueError(f"history {n} is empty; an ID model needs at least one item to describe a user.")
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"history {n} must be a 1-D sequence of integer item indices; got {arr.dtype} {arr.shape}.")
        bad = arr[(arr < 0) | (arr >= n_items)]
        if bad.size:
            raise ValueError(
                f"history {n} holds item index {int(bad[0])}, but the catalogue has {n_items} items "
                f"(indices 0..{n_items - 1}); encode raw ids with the model's item index first."
            )
        out.append(arr.astype(np.int64, copy=False))
    return out


def pad_histories(histories: list[np.ndarray], max_len: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad the last ``max_len`` items of each history.

    Returns ``(items, lengths)``: ``items`` of shape (n, L) holding item index + 1
    (0 = padding), ``lengths`` of shape (n,).
    """
    lengths = np.array([len(h) if max_len is None else min(len(h), max_len) for h in histories], dtype=np.int64)
    width = int(lengths.max()) if len(histories) else 0
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, (hist, n) in enumerate(zip(histories, lengths)):
        out[row, :n] = hist[len(hist) - n:] + 1
    return torch.from_numpy(out), torch.from_numpy(lengths)


def next_item_positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(user, position)`` of every sequence item that has at least one item before it.

    For lengths ``[3, 1, 2]``: users ``[0, 0, 2]``, positions ``[1, 2, 1]``.
    """
    counts = np.maximum(np.asarray(lengths, dtype=np.int64) - 1, 0)
    users = np.repeat(np.arange(len(counts)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)  # index of each user's first pair
    return users, np.arange(int(counts.sum())) - first + 1


class SequenceStore:
    """All training sequences, flat, for fast gathering of windows.

    ``flat[indptr[u]:indptr[u + 1]]`` is user ``u``'s time-ordered item sequence.
    """

    def __init__(self, sequences: list[np.ndarray]) -> None:
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.flat = np.concatenate(sequences).astype(np.int64) if len(sequences) else np.zeros(0, np.int64)
        self.lengths = lengths

    def sequences(self, users: np.ndarray) -> list[np.ndarray]:
        """The full sequences of ``users``."""
        return [self.flat[self.indptr[u]:self.indptr[u + 1]] for u in users]

    def shuffled_batches(
        self, users: np.ndarray, ends: np.ndarray, batch_size: int, max_len: int, generator: torch.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Shuffle ``(user, end)`` pairs with ``generator`` and yield them in batches as
        ``(users, ends, lengths)``, ``lengths`` being the window sizes ``min(end, max_len)``."""
        order = torch.randperm(len(users), generator=generator).numpy()
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            yield users[rows], ends[rows], np.minimum(ends[rows], max_len)

    def windows(self, users: np.ndarray, ends: np.ndarray, lengths: np.ndarray, width: int) -> torch.Tensor:
        """Items ``seq_u[end - length : end]`` for each row, as index + 1, right-padded to ``width``.

        Shapes: ``users``, ``ends``, ``lengths`` (B,) -> (B, width).
        """
        offsets = np.arange(width)[None, :]  # (1, W)
        valid = offsets < lengths[:, None]  # (B, W)
        pos = self.indptr[users][:, None] + ends[:, None] - lengths[:, None] + offsets  # (B, W)
        items = np.where(valid, self.flat[np.where(valid, pos, 0)] + 1, PAD)
        return torch.from_numpy(items)
