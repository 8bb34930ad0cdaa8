"""EASE's leading co-occurrence factors, appended to a backbone's ID vectors (``cooccurrence_factors``).

A sequence backbone such as SASRec reads the recent items in order; EASE
(:class:`EASE`) reads the history as a set of co-occurring items, and the
two added rank better than either. The alignment module can only learn what
its ID inputs can express, though: distilled from a separate EASE teacher,
it stopped short of it (docs/benchmarks.md, "Why the student stops below its
teacher"). These factors put the co-occurrence signal into the ID vectors
themselves. With EASE's item-item weights ``B ~ U S V^T`` truncated to
``rank``, a user with multi-hot history ``h`` gets ``c h U S`` and item ``i``
gets ``c v_i``: appended to the backbone's vectors, a user-item dot product
becomes the backbone's score plus ``c**2`` x rank-r EASE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._ease import EASE, history_matrix
from ._id_factors import IdFactors

#: Catalogues up to this size get the exact SVD (seconds); larger ones a randomised one of the leading directions.
_EXACT_SVD_ITEMS = 4000


class CooccurrenceFactors(IdFactors):
    """Rank-``r`` factors of EASE's weights: ``users(histories) @ items.T`` is rank-r EASE's score (times the
    factor :meth:`~IdFactors.scaled_to` sets).

    Parameters
    ----------
    history_side : tensor of shape (n_items, r)
        ``U S``: a history's factor is the sum of its items' rows.
    item_side : tensor of shape (n_items, r)
        ``V``: an item's factor.
    """

    def __init__(self, history_side: torch.Tensor, item_side: torch.Tensor) -> None:
        if history_side.shape != item_side.shape:
            raise ValueError(f"the two factor tables differ in shape: {tuple(history_side.shape)} and "
                             f"{tuple(item_side.shape)}.")
        self.history_side, self.item_side = history_side.float(), item_side.float()

    @classmethod
    def fit(cls, histories: Sequence[np.ndarray], n_items: int, rank: int, l2: float = 200.0) -> CooccurrenceFactors:
        """EASE fitted on ``histories``, truncated to its ``rank`` leading singular directions (all of them when
        the catalogue has fewer items). Deterministic: the randomised SVD of large catalogues draws from a seed
        of its own, and the global random state is left as it was."""
        weights = torch.as_tensor(EASE(l2=l2).fit(histories, n_items).weights_, dtype=torch.float64)
        rank = min(rank, n_items)
        if n_items <= _EXACT_SVD_ITEMS:
            left, values, right_t = torch.linalg.svd(weights)
            right = right_t.T
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                left, values, right = torch.svd_lowrank(weights, q=min(2 * rank + 16, n_items), niter=8)
        return cls(left[:, :rank] * values[:rank], right[:, :rank])

    @property
    def items(self) -> torch.Tensor:
        """Every item's factor (n_items, r)."""
        return self.item_side

    def users(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """The factors (n, r) of histories (item indices below ``n_items``)."""
        rows = history_matrix([np.asarray(h) for h in histories], self.history_side.shape[0])
        return torch.as_tensor(rows @ self.history_side.numpy())

    def rescaled(self, factor: float) -> CooccurrenceFactors:
        """These factors with both sides times ``factor`` (the score times ``factor**2``)."""
        return CooccurrenceFactors(self.history_side * factor, self.item_side * factor)
