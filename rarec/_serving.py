"""Serving a fitted RARecommender: ranking known users and new histories, cold items, evaluation.

:class:`RankingMixin` is the half of the estimator that a fitted model
needs: everything here reads the fitted attributes (``towers_``,
``item_vectors_``, ``user_vectors_``, ``seen_``, ...) and ranks through one
:class:`rarec._ranker.Ranker`, so that ``recommend``, ``predict``,
``evaluate`` and ``score`` rank exactly alike.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils.validation import check_is_fitted

from . import _params
from ._ann import IVFIndex
from ._ranker import Ranker
from ._validation import check_int
from .align import Towers
from .data import IdIndex, InteractionLog, ItemText, ItemTextTable
from .llm import FrozenLLM
from .metrics import full_ranking_metrics

logger = logging.getLogger(__name__)


class RankingMixin:
    """``recommend``, ``predict``, ``add_items``, ``evaluate`` and ``score`` of a fitted recommender."""

    # ------------------------------------------------------- fitted views
    def _fitted(self, name: str) -> Towers:
        if "towers_" not in self.__dict__:
            raise AttributeError(f"{name} exists once the recommender is fitted")
        return self.towers_

    @property
    def llm_(self) -> FrozenLLM:
        """The frozen LLM; after :meth:`load` or unpickling it is loaded on first use."""
        return self._fitted("llm_").llm

    @property
    def aligner_(self):
        """The trained alignment module (``towers_.aligner``)."""
        return self._fitted("aligner_").aligner

    @property
    def prompts_(self):
        """Builds the token ids of user and item prompts (``towers_.prompts``)."""
        return self._fitted("prompts_").prompts

    @property
    def ranker_(self) -> Ranker:
        """Scores users against the catalogue, as every ranking method does."""
        towers = self._fitted("ranker_")
        return Ranker(self.item_vectors_, towers.item_cf[:, 0], self.score_fusion_, self.ranking_memory_mb)

    @property
    def item_popularity_(self) -> torch.Tensor:
        """Interactions per item in the fit data (n_items,): the ranking of users without any history."""
        check_is_fitted(self, "item_vectors_")
        return torch.as_tensor(np.asarray(self.seen_.sum(axis=0)).ravel(), dtype=torch.float32)

    # -------------------------------------------------------------- inference
    def _user_indices(self, users: Any) -> np.ndarray:
        raw = np.atleast_1d(np.asarray(users, dtype=object if not isinstance(users, np.ndarray) else None))
        try:
            return self.users_.encode(raw.tolist())
        except KeyError as exc:
            raise KeyError(f"{exc.args[0]}; this model's user ids are {self.users_.dtype_name}s (booleans are not ids). "
                           "For a user not seen in fit, pass their history instead: recommend(histories=[...]).") from None

    def _cf_users(self, users: np.ndarray) -> torch.Tensor | None:
        """CF vectors of known users, when the ranking fuses in the CF score."""
        return self.towers_.cf_user_vectors[users] if self.score_fusion_ else None

    def _scores(self, users: np.ndarray) -> torch.Tensor:
        """Ranking scores (n, n_items) of known users, from cached vectors."""
        return self.ranker_.scores(self.user_vectors_[users], self._cf_users(users))

    def recommend(self, users: Any = None, k: int | None = None, exclude_seen: bool = True,
                  histories: Sequence[Sequence[Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items and their scores.

        Parameters
        ----------
        users : raw user id or sequence of them
            Users seen in ``fit``: a matrix product with cached vectors, no LLM call.
        k : int, optional
            Defaults to ``self.k``; at most the catalogue size.
        exclude_seen : bool, default True
            Leave out the items the user interacted with (in ``X``, or in the history).
        histories : sequence of raw item-id sequences, optional
            Instead of ``users``: histories of users not seen in ``fit`` (cold
            start), encoded through the CF backbone and the user tower.

        Returns
        -------
        ids, scores : ndarray
            Raw item ids and scores, shape (k,) for one user, (n, k) for several.
            A user who has seen nearly everything gets fewer than ``k`` real
            items; the rest is padded with ``None`` ids and ``-inf`` scores.
        """
        check_is_fitted(self, "item_vectors_")
        k = self.k if k is None else k
        check_int(k, "k", type(self).__name__, 1, self.n_items_)
        single = histories is None and np.ndim(users) == 0
        if histories is None:
            idx = self._user_indices(users)
            vectors, cf_vectors = self.user_vectors_[idx], self._cf_users(idx)
            seen = [self.seen_.indices[self.seen_.indptr[u]:self.seen_.indptr[u + 1]] for u in idx]
            ids, values = self._top_k_ids(vectors, cf_vectors, seen if exclude_seen else None, k)
            return (ids[0], values[0]) if single else (ids, values)
        if isinstance(histories, str | bytes) or not isinstance(histories, Sequence | np.ndarray):
            raise TypeError(f"histories must be a sequence of item-id sequences, one per user; got "
                            f"{type(histories).__name__}.")
        encoded = [self.items_.encode(list(h)) for h in histories]
        ids = np.full((len(encoded), k), None, dtype=object)
        values = np.full((len(encoded), k), -np.inf)
        filled = np.array([len(h) > 0 for h in encoded], dtype=bool)
        if filled.any():  # users with a history: the CF backbone and the user tower
            rows = [h for h, f in zip(encoded, filled) if f]
            unknown = np.full(len(rows), -1)
            vectors = self.towers_.encode_users(rows, unknown, progress=bool(self.verbose))
            # the CF score of a history as for a known user (as in towers_.cf_user_vectors)
            cf_vectors = self.towers_.user_cf(rows, unknown) if self.score_fusion_ else None
            ids[filled], values[filled] = self._top_k_ids(vectors, cf_vectors, rows if exclude_seen else None, k)
        if not filled.all():  # users without a history: the most popular items of the fit data
            top = torch.topk(self.item_popularity_, k)
            ids[~filled] = self.items_.decode(top.indices.numpy()).astype(object)
            values[~filled] = top.values.numpy()
        return ids, values

    def _top_k_ids(self, vectors: torch.Tensor, cf_vectors: torch.Tensor | None, seen: list[np.ndarray] | None,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ids and scores (n, k) of the best items; ``None`` / ``-inf`` where fewer than k are left."""
        _params.validate_retrieval_params(self)
        index = self._ivf_index if self.retrieval == "ivf" else None
        values, indices = self.ranker_.top_k(vectors, cf_vectors, k, seen, index, self.ivf_probe)
        values = values.numpy()
        ids = self.items_.decode(indices.clamp_min(0).numpy().reshape(-1)).reshape(indices.shape).astype(object)
        ids[np.isinf(values)] = None
        return ids, values

    def _ivf_index(self) -> IVFIndex:
        """The approximate index over ``item_vectors_``, built on first use (again after ``add_items``)."""
        ivf = self.__dict__.get("_ivf")  # reset by fit, load and add_items
        if ivf is None or (self.ivf_lists is not None and min(self.ivf_lists, self.n_items_) != ivf.n_lists):
            logger.info("building the IVF index over %d item vectors", self.n_items_)
            ivf = self._ivf = IVFIndex(self.item_vectors_, self.ivf_lists, seed=getattr(self, "seed_", 0) or 0)
        return ivf

    # ------------------------------------------------------------ cold items
    def add_items(self, item_text: Any) -> RankingMixin:
        """Add items that had no interactions in ``fit`` (cold start), described by their text.

        Each new item goes through the item tower with its title and
        categories. The CF backbone has no embedding for it, so its ID prefix
        is built from the CF embedding of the catalogue item whose text is
        closest (cosine of TF-IDF vectors of title and categories, weighted
        on the fitted catalogue's texts), or from the mean CF item embedding
        when it shares no word with any. Afterwards ``recommend``,
        ``predict`` and ``evaluate`` rank the new items with the others, and
        histories may name them (the CF backbone skips them; the user prompt
        shows their titles). Saved models keep them. The trained towers rank
        mostly through the ID prefix, so an added item ranks roughly where
        its text neighbour does (docs/benchmarks.md, cold items).

        Parameters
        ----------
        item_text : mapping, ItemTextTable or rows
            ``{item_id: title | (title, categories) | ItemText}`` for the new
            items. Ids already in the catalogue are skipped (a warning counts
            them); items with no title (None or empty) cannot be described and
            are left out with a warning.

        Returns
        -------
        self
        """
        check_is_fitted(self, "item_vectors_")
        raw = dict(item_text) if isinstance(item_text, dict) else dict(ItemTextTable.from_any(item_text).items())
        known = [i for i in raw if self.items_.encode([i], unknown="mask")[0] >= 0]
        texts = {i: ItemText.coerce(v, i) for i, v in raw.items() if i not in known}
        blank = [i for i, t in texts.items() if t is None]
        new = {i: t for i, t in texts.items() if t is not None}
        if known:
            warnings.warn(f"add_items: {len(known)} item(s) are already in the catalogue and were left as they are "
                          f"(first: {known[0]!r}).", UserWarning, stacklevel=2)
        if blank:
            warnings.warn(f"add_items: {len(blank)} item(s) have neither interactions nor a title and were left out "
                          f"(first: {blank[0]!r}).", UserWarning, stacklevel=2)
        if not new:
            return self
        try:
            items = IdIndex(self.items_.to_list() + list(new), kind="item")
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"add_items: the new ids must be of the catalogue's id type ({self.items_.dtype_name}); "
                            f"{exc}") from None
        self.items_, self.n_items_, self._ivf = items, len(items), None
        added = self.towers_.encode_added_items(self.towers_.add_items(list(new.values())),
                                                progress=bool(self.verbose))
        self.item_vectors_ = torch.cat([self.item_vectors_, added])
        self.seen_ = sp.csr_matrix((self.seen_.data, self.seen_.indices, self.seen_.indptr),
                                   shape=(self.n_users_, self.n_items_))
        return self

    def predict(self, users: Any) -> np.ndarray:
        """Top-``k`` raw item ids for each user seen in ``fit``, shape (n_users, k); seen items excluded.

        A catalogue smaller than ``k`` gives lists as long as the catalogue; a
        user with fewer than ``k`` unseen items gets ``None`` after the last one.
        """
        check_is_fitted(self, "item_vectors_")
        ids, _ = self.recommend(np.atleast_1d(np.asarray(users, dtype=object)), min(self.k, self.n_items_))
        return ids

    def evaluate(self, X: Any, ks: Sequence[int] = (10, 20, 100),
                 metrics: Sequence[str] = ("hr", "ndcg", "mrr"), per_user: bool = False) -> dict[str, Any]:
        """Full-ranking metrics of held-out interactions ``X``, averaged over their users.

        Every item is ranked for each held-out interaction's user, with the
        user's items from ``fit`` excluded; users are scored in blocks that
        stay within ``ranking_memory_mb``. Interactions whose user or item was
        not seen in ``fit`` cannot be ranked: they are left out with a warning.

        With ``per_user=True`` each metric is an array with one value per
        evaluated user, and ``"users"`` holds those users' ids in the same
        order: two models evaluated on the same ``X`` can then be compared
        user by user with :func:`rarec.metrics.paired_difference`.

        Returns
        -------
        dict
            ``{"hr@10": ..., "ndcg@10": ..., ...}`` for every metric and cut-off
            (plus ``"users"`` with ``per_user``).
        """
        check_is_fitted(self, "item_vectors_")
        test = self._known_interactions(X)
        users_per_block = max(1, min(256, int(self.ranking_memory_mb * 2**20 / 4 / self.n_items_)))
        found = full_ranking_metrics(self._scores, test, self.seen_, ks=list(ks), metrics=list(metrics),
                                     batch_size=users_per_block, per_user=per_user)
        if per_user:
            found["users"] = self.users_.ids[found["users"]]
        return found

    def score(self, X: Any, y: Any = None) -> float:
        """Mean NDCG@k of held-out interactions ``X``; higher is better (scikit-learn's scorer convention).

        As in :meth:`evaluate`: the user's items from ``fit`` are excluded from
        the ranking, and interactions with users or items unseen in ``fit`` are
        left out with a warning.
        """
        return self.evaluate(X, ks=[self.k], metrics=["ndcg"])[f"ndcg@{self.k}"]

    def _known_interactions(self, X: Any) -> InteractionLog:
        raw = InteractionLog.from_any(X, source="held-out interactions")
        users = self.users_.encode(raw.users.ids, unknown="mask")[raw.user_codes]
        items = self.items_.encode(raw.items.ids, unknown="mask")[raw.item_codes]
        keep = (users >= 0) & (items >= 0)
        if not keep.any():
            raise ValueError(f"none of the {len(raw)} held-out interactions has a user and an item seen in fit; "
                             "nothing can be ranked.")
        if not keep.all():
            warnings.warn(f"{int((~keep).sum())} of {len(raw)} held-out interactions name a user or item not seen "
                          "in fit and are left out of the evaluation.", stacklevel=3)
        times = None if raw.timestamps is None else raw.timestamps[keep]
        return InteractionLog(users[keep], items[keep], self.users_, self.items_, times)
