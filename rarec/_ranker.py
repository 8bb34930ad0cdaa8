"""The ranker: one scoring path (the LLM score, optionally fused with the CF score) and top-k over the catalogue.

Used by ``recommend``, ``predict``, ``evaluate``, ``score`` and the validation
rounds of training, so that what is validated is what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._ann import IVFIndex
from ._distributed import Group
from ._scoring import cf_scores, standardise
from ._topk import ScoreBlock, row_moments, top_k
from .align import Towers
from .data import InteractionLog
from .metrics import full_ranking_metrics


@dataclass
class Ranker:
    """Scores of users against every item.

    Attributes
    ----------
    item_vectors : Tensor (n_items, hidden)
        The item tower's vectors.
    item_cf : Tensor (n_items, d)
        The CF backbone's item embeddings (cold items padded), for fusion.
    fusion : float
        Weight w of the CF score: ``z(h_u · h_i) + w · z(cf(u, i))``, each
        standardised per user over the catalogue; 0 ranks by the LLM score alone.
    memory_mb : float
        Largest block of float32 scores built at once by :meth:`top_k`.
    """

    item_vectors: torch.Tensor
    item_cf: torch.Tensor
    fusion: float = 0.0
    memory_mb: float = 1024

    @property
    def n_items(self) -> int:
        return self.item_vectors.shape[0]

    def scores(self, user_vectors: torch.Tensor, cf_user_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """Every item's score (n, n_items) for users given by their vectors (n, hidden) and CF vectors (n, K, d)."""
        llm = user_vectors @ self.item_vectors.T
        if not self.fusion:
            return llm
        return self._fused(llm, cf_scores(cf_user_vectors, self.item_cf), None, None)

    def _fused(self, llm: torch.Tensor, cf: torch.Tensor, llm_moments, cf_moments) -> torch.Tensor:
        return standardise(llm, llm_moments) + self.fusion * standardise(cf, cf_moments)

    def block(self, user_vectors: torch.Tensor, cf_user_vectors: torch.Tensor | None = None) -> ScoreBlock:
        """:meth:`scores` as a function of (user rows, item slice), computable chunk by chunk."""
        def llm(rows, items):
            return user_vectors[rows] @ self.item_vectors[items].T

        if not self.fusion:
            return llm

        def cf(rows, items):
            return cf_scores(cf_user_vectors[rows], self.item_cf[items])

        n = len(user_vectors)
        llm_moments, cf_moments = (row_moments(f, n, self.n_items, self.memory_mb) for f in (llm, cf))

        def fused(rows, items):
            return self._fused(llm(rows, items), cf(rows, items), tuple(m[rows] for m in llm_moments),
                               tuple(m[rows] for m in cf_moments))

        return fused

    def top_k(self, user_vectors: torch.Tensor, cf_user_vectors: torch.Tensor | None, k: int,
              exclude: Sequence[np.ndarray] | None = None, index: Callable[[], IVFIndex] | None = None,
              n_probe: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, indices)`` (n, k) of each user's best items, ``-inf`` where fewer than k are left.

        With ``index`` (which gives the approximate index over these item
        vectors, built on first use), a search of ``n_probe`` lists instead
        of the exact ranking; it ranks by the LLM score alone.
        """
        if index is not None:
            if self.fusion:
                raise ValueError(f"retrieval='ivf' ranks by the LLM score alone, but this model fuses in the CF score "
                                 f"(score_fusion_={self.fusion}); use retrieval='exact'.")
            return index().search(user_vectors, k, n_probe, exclude, self.memory_mb)
        return top_k(self.block(user_vectors, cf_user_vectors), len(user_vectors), self.n_items, k, exclude,
                     self.memory_mb)


def validation_ndcg(towers: Towers, train: InteractionLog, valid: InteractionLog, weights: Sequence[float],
                    group: Group, progress: bool = False) -> dict[float, float]:
    """Validation NDCG@10 of the current alignment module for each fusion weight in ``weights``.

    Encodes the catalogue and the validation users (split over the ranks of a
    distributed fit) and ranks every item, the users' training items excluded.
    """
    items = group.sharded(lambda part: towers.encode_items(part, progress=progress), towers.n_items)
    users = np.unique(valid.user_codes)
    sequences = train.user_sequences()
    vectors = torch.zeros(train.n_users, items.shape[1])
    vectors[users] = group.sharded(lambda part: towers.encode_users([sequences[u] for u in users[part]], users[part],
                                                                    progress=progress), len(users))
    cf_users = towers.user_cf_table(sequences, users, train.n_users) if any(weights) else None
    item_cf = towers.item_cf[:, 0]

    def ndcg(weight: float) -> float:
        ranker = Ranker(items, item_cf, weight)
        return full_ranking_metrics(lambda u: ranker.scores(vectors[u], None if cf_users is None else cf_users[u]),
                                    valid, train, ks=[10], metrics=["ndcg"])["ndcg@10"]

    return {w: ndcg(w) for w in weights}
