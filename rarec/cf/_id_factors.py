"""What every factor set appended to the ID vectors shares: a score, and a scale set against the backbone's.

Two kinds exist: EASE's co-occurrence factors (``cooccurrence_factors``,
:class:`CooccurrenceFactors`) and the items' words (``text_factors``,
:class:`TextFactors`). Each gives a vector per history and per item whose
dot product is a score added to the backbone's, in units of the backbone's
score spread (:meth:`IdFactors.scaled_to`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

#: Histories whose score spreads set the scale (a fixed draw).
_PROBE = 1000


class IdFactors:
    """A history side and an item side whose dot product is a score (subclasses say how each is built)."""

    @property
    def rank(self) -> int:
        return self.items.shape[1]

    @property
    def items(self) -> torch.Tensor:  # pragma: no cover - every subclass defines it
        """Every known item's factor (n_items, r)."""
        raise NotImplementedError

    def users(self, histories: Sequence[np.ndarray]) -> torch.Tensor:  # pragma: no cover - as above
        """The factors (n, r) of histories (item indices of known items)."""
        raise NotImplementedError

    def rescaled(self, factor: float) -> IdFactors:  # pragma: no cover - as above
        """These factors with both sides times ``factor`` (the score times ``factor**2``)."""
        raise NotImplementedError

    def score(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """The added score (n, n_items) of each history for every item."""
        return self.users(histories) @ self.items.T

    def scaled_to(self, weight: float, histories: Sequence[np.ndarray],
                  backbone_scores: Callable[[np.ndarray], torch.Tensor]) -> IdFactors:
        """Factors whose score is ``weight`` x the backbone's score spread per unit of its own: the mean over
        (up to 1,000, a fixed draw of) ``histories`` of the std of ``backbone_scores(rows)`` (the catalogue
        scores of those rows of ``histories``) over that of :meth:`score`."""
        probe = np.sort(np.random.default_rng(0).permutation(len(histories))[:_PROBE])
        spread = float(self.score([histories[p] for p in probe]).std(1).mean())
        unit = float(backbone_scores(probe).float().std(1).mean()) / max(spread, 1e-12)
        return self.rescaled((weight * unit) ** 0.5)  # split between the two sides
