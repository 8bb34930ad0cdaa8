"""The popularity baseline: every user gets the most interacted-with items."""

from __future__ import annotations

import numpy as np

from ..data import InteractionLog


class PopularityRecommender:
    """Scores every item by its number of training interactions.

    The reference floor for any recommender: a model that does not beat it
    has learned nothing personal.

    Attributes
    ----------
    item_counts_ : ndarray of float32, shape (n_items,)
        Interactions per item in the training log.

    Examples
    --------
    >>> import numpy as np
    >>> from rarec.data import InteractionLog
    >>> from rarec.cf import PopularityRecommender
    >>> log = InteractionLog.from_any([(1, "a"), (2, "a"), (2, "b")])
    >>> PopularityRecommender().fit(log).score_users(np.array([0])).tolist()
    [[2.0, 1.0]]
    """

    def fit(self, train: InteractionLog) -> PopularityRecommender:
        """Count interactions per item; returns self."""
        self.item_counts_ = train.item_counts().astype(np.float32)
        return self

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores of shape ``(len(users), n_items)``: the same counts for everyone."""
        return np.broadcast_to(self.item_counts_, (len(users), self.item_counts_.shape[0]))
