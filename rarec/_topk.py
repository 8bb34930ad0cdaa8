"""Top-k over the whole catalogue within a memory budget.

Scores are produced block by block (a chunk of users × a slice of items), and
each user's partial top-k list is merged with the next block's, so no
``n_users × n_items`` matrix is built when it would exceed the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

#: block(rows, items) -> scores (len(rows), items.stop - items.start)
ScoreBlock = Callable[[np.ndarray, slice], torch.Tensor]


def chunk_sizes(n_rows: int, n_items: int, memory_mb: float) -> tuple[int, int]:
    """(rows, items) per block so that one float32 block stays within ``memory_mb`` (at least 1 × 1)."""
    cells = max(1, int(memory_mb * 2**20) // 4)
    items = min(n_items, cells)
    rows = max(1, min(n_rows, cells // items))
    return rows, items


def _slices(n: int, size: int):
    return (slice(start, min(start + size, n)) for start in range(0, n, size))


def top_k(block: ScoreBlock, n_rows: int, n_items: int, k: int, exclude: Sequence[np.ndarray] | None = None,
          memory_mb: float = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best items of every row: ``(values, indices)``, each (n_rows, k), best first.

    Parameters
    ----------
    block : callable
        ``block(rows, items)`` scores rows ``rows`` against the item slice ``items``.
    exclude : sequence of int arrays, optional
        Per row, items never returned (they score ``-inf``); a row with fewer
        than ``k`` other items is padded with ``-inf`` values.
    memory_mb : float, default 1024
        Largest float32 block of scores computed at once.
    """
    k = min(k, n_items)
    exclude = None if exclude is None else [np.unique(np.asarray(e, dtype=np.int64)) for e in exclude]
    row_size, item_size = chunk_sizes(n_rows, n_items, memory_mb)
    values = torch.empty(n_rows, k)
    indices = torch.empty(n_rows, k, dtype=torch.long)
    for rows_slice in _slices(n_rows, row_size):
        rows = np.arange(rows_slice.start, rows_slice.stop)
        best_values = torch.empty(len(rows), 0)
        best_indices = torch.empty(len(rows), 0, dtype=torch.long)
        for items in _slices(n_items, item_size):
            scores = block(rows, items).float()
            if exclude is not None:
                for row, row_exclude in enumerate(exclude[rows_slice]):
                    lo, hi = np.searchsorted(row_exclude, [items.start, items.stop])
                    scores[row, torch.from_numpy(row_exclude[lo:hi] - items.start)] = -torch.inf
            candidates = torch.cat([best_values, scores], dim=1)
            candidate_ids = torch.cat([best_indices, torch.arange(items.start, items.stop).expand(len(rows), -1)], dim=1)
            top = torch.topk(candidates, min(k, candidates.shape[1]), dim=1)
            best_values, best_indices = top.values, candidate_ids.gather(1, top.indices)
        values[rows_slice], indices[rows_slice] = best_values, best_indices
    return values, indices


def row_moments(block: ScoreBlock, n_rows: int, n_items: int, memory_mb: float = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over all items of every row of scores, computed block by block."""
    row_size, item_size = chunk_sizes(n_rows, n_items, memory_mb)
    total = torch.zeros(n_rows, dtype=torch.float64)
    squares = torch.zeros(n_rows, dtype=torch.float64)
    for rows_slice in _slices(n_rows, row_size):
        rows = np.arange(rows_slice.start, rows_slice.stop)
        for items in _slices(n_items, item_size):
            scores = block(rows, items).double()
            total[rows_slice] += scores.sum(1)
            squares[rows_slice] += scores.square().sum(1)
    mean = total / n_items
    variance = (squares - n_items * mean.square()).clamp_min(0) / max(n_items - 1, 1)  # as torch.std
    return mean.float(), variance.sqrt().float()
