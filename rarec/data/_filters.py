"""A k-core filter as a scikit-learn transformer, for pipelines in front of a recommender."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin

from .._validation import check_int
from ._dataset import k_core_filter
from ._interactions import InteractionLog


class KCoreFilter(TransformerMixin, BaseEstimator):
    """Drop users and items with fewer than ``k`` interactions from the training log.

    A fit-time step: ``fit_transform`` (what a :class:`~sklearn.pipeline.Pipeline`
    calls while fitting) returns the filtered log, while ``transform`` (what
    the pipeline calls before ``predict`` and ``score``) passes its input on
    unchanged, because at that point the input is user ids or held-out
    interactions, which must not be filtered.

    Parameters
    ----------
    k : int, default 5
        Threshold for users and items (see :func:`rarec.data.k_core_filter`).
    user_k, item_k : int, optional
        Separate thresholds.

    Attributes
    ----------
    n_removed_ : int
        Interactions the filter removed in the last ``fit_transform``.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from rarec.data import KCoreFilter, InteractionLog
    >>> log = InteractionLog.from_any([(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)])
    >>> len(KCoreFilter(k=2).fit_transform(log))
    4
    """

    def __init__(self, k: int = 5, user_k: int | None = None, item_k: int | None = None) -> None:
        self.k = k
        self.user_k = user_k
        self.item_k = item_k

    def fit(self, X: Any, y: Any = None) -> KCoreFilter:
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> InteractionLog:
        name = type(self).__name__
        check_int(self.k, "k", name, 1)
        for param in ("user_k", "item_k"):
            if getattr(self, param) is not None:
                check_int(getattr(self, param), param, name, 1)
        log = InteractionLog.from_any(X)
        kept = k_core_filter(log, self.k, user_k=self.user_k, item_k=self.item_k)
        self.n_removed_ = len(log) - len(kept)
        return kept

    def transform(self, X: Any) -> Any:
        """Return ``X`` unchanged: the filter applies to training data only."""
        return X
