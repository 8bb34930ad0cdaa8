"""Top-K ranking metrics for full-catalogue and sampled-candidate evaluation.

Every held-out (user, item) pair gets the 1-based rank its item would have in
the user's ranked list. Items in the user's ``exclude`` set (their training
items) are removed from the list, except the held-out item itself. Equal
scores are ordered by item index, exactly as a stable sort of the scores
would order them (``ties="first"``), or put every equally scored item ahead
(``ties="pessimistic"``), so that a constant scorer earns nothing.

From the ranks, per user, with ``T`` held-out items and ranks ``r_1..r_T``:

- HR@K = 1 if any ``r <= K``
- Recall@K = ``#{r <= K} / T``
- NDCG@K = ``sum_{r <= K} 1/log2(r + 1)`` / ``sum_{i=1}^{min(T, K)} 1/log2(i + 1)``
- MRR@K = ``1 / min r`` if ``min r <= K`` else 0

and each metric is the mean over users with at least one held-out item
(``per_user=True`` keeps one value per user instead, for paired comparisons
of two models on the same users; see :func:`paired_difference`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state

from ..data import InteractionLog

METRICS = ("hr", "ndcg", "mrr", "recall")
Scorer = Callable[[np.ndarray], Any]

# Elements of the (pairs x items) comparison block held at once (~64 MB of fp32).
_BLOCK_ELEMENTS = 1 << 24


def _as_csr(obj: InteractionLog | sp.spmatrix | None, n_users: int, n_items: int, name: str) -> sp.csr_matrix:
    if obj is None:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    mat = obj.to_csr() if isinstance(obj, InteractionLog) else sp.csr_matrix(obj)
    if mat.shape != (n_users, n_items):
        raise ValueError(f"{name} has shape {mat.shape}; expected (n_users, n_items) = {(n_users, n_items)}.")
    mat = mat.copy()
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks) if not isinstance(ks, int | np.integer) else (ks,)
    if not ks:
        raise ValueError("The 'ks' parameter must name at least one cut-off K.")
    for k in ks:
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise ValueError(f"The 'ks' parameter must hold ints in [1, inf). Got {k!r} instead.")
    return tuple(sorted(set(int(k) for k in ks)))


def _score_block(scorer: Scorer | np.ndarray | torch.Tensor, users: np.ndarray, n_items: int) -> torch.Tensor:
    if callable(scorer):
        block = scorer(users)
    else:
        block = scorer[users]
    if isinstance(block, torch.Tensor):
        block = block.detach().to("cpu", torch.float32)
    else:  # copies, so read-only NumPy views (e.g. broadcast arrays) are fine
        block = torch.tensor(np.asarray(block, dtype=np.float32))
    if block.shape != (len(users), n_items):
        raise ValueError(f"the scorer returned shape {tuple(block.shape)}; expected {(len(users), n_items)}.")
    if torch.isnan(block).any():
        raise ValueError("the scorer returned NaN scores; cannot rank items.")
    return block


def ranks_against_candidates(
    target_scores: torch.Tensor, target_items: torch.Tensor, competitor_scores: torch.Tensor,
    competitor_items: torch.Tensor, ties: str = "first",
) -> torch.Tensor:
    """1-based rank of each target among its competitors.

    Parameters
    ----------
    target_scores, target_items : Tensor, shape (P,)
    competitor_scores, competitor_items : Tensor, shape (P, C)
        Competitors with score ``-inf`` never rank ahead. A competitor equal to
        the target item itself is ignored.
    ties : {"first", "pessimistic"}
    """
    s = target_scores[:, None]  # (P, 1)
    not_self = competitor_items != target_items[:, None]  # (P, C)
    ahead = (competitor_scores > s) & not_self
    tied = (competitor_scores == s) & not_self & (competitor_scores > -torch.inf)
    if ties == "first":
        tied &= competitor_items < target_items[:, None]
    elif ties != "pessimistic":
        raise ValueError(f"ties must be 'first' or 'pessimistic'; got {ties!r}.")
    return 1 + ahead.sum(1) + tied.sum(1)


def metrics_from_ranks(
    ranks: np.ndarray, pair_group: np.ndarray, ks: Iterable[int] = (10, 20, 100), metrics: Iterable[str] = METRICS,
    *, per_user: bool = False,
) -> dict[str, Any]:
    """Average per-user metrics from the ranks of held-out pairs.

    Parameters
    ----------
    ranks : ndarray of int, shape (P,)
        1-based rank of each held-out pair.
    pair_group : ndarray of int, shape (P,)
        The user (or any group id) each pair belongs to; metrics are averaged per group.
    ks : iterable of int
    metrics : iterable of {"hr", "ndcg", "mrr", "recall"}
    per_user : bool, default False
        Keep one value per group instead of the mean.

    Returns
    -------
    dict
        ``{"hr@10": ..., "ndcg@10": ..., ...}``: floats, or with ``per_user``
        arrays with one value per group, in the order of the extra key
        ``"users"`` (the sorted distinct groups).
    """
    ks = _check_ks(ks)
    metrics = tuple(metrics)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {METRICS}.")
    ranks = np.asarray(ranks, dtype=np.int64)
    groups, group, n_targets = np.unique(np.asarray(pair_group), return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    n_groups = n_targets.shape[0]
    if n_groups == 0:
        raise ValueError("no held-out interactions to evaluate.")
    best = np.full(n_groups, np.iinfo(np.int64).max)
    np.minimum.at(best, group, ranks)
    gain = 1.0 / np.log2(ranks + 1.0)
    out: dict[str, Any] = {"users": groups} if per_user else {}
    for k in ks:
        hit = ranks <= k
        n_hits = np.bincount(group, weights=hit, minlength=n_groups)
        for m in metrics:
            if m == "hr":
                value = (n_hits > 0).astype(float)
            elif m == "recall":
                value = n_hits / n_targets
            elif m == "mrr":
                value = np.where(best <= k, 1.0 / best, 0.0)
            else:  # ndcg
                dcg = np.bincount(group, weights=gain * hit, minlength=n_groups)
                ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(n_targets, k) - 1]
                value = dcg / ideal
            out[f"{m}@{k}"] = value if per_user else float(value.mean())
    return out


def full_ranking_metrics(
    scorer: Scorer | np.ndarray | torch.Tensor,
    test: InteractionLog | sp.spmatrix,
    exclude: InteractionLog | sp.spmatrix | None = None,
    *,
    ks: Iterable[int] = (10, 20, 100),
    metrics: Iterable[str] = METRICS,
    ties: str = "first",
    batch_size: int = 256,
    per_user: bool = False,
) -> dict[str, Any]:
    """Rank the whole catalogue for every test user and average HR/NDCG/MRR/Recall@K.

    Parameters
    ----------
    scorer : callable or array
        ``scorer(user_indices) -> (len(user_indices), n_items)`` scores (NumPy
        or torch), higher is better; or a dense ``(n_users, n_items)`` array.
        It is called on batches of ``batch_size`` users, so no
        ``n_users x n_items`` matrix is ever built here.
    test : InteractionLog or sparse matrix
        Held-out interactions (user x item). Users without any are skipped.
    exclude : InteractionLog or sparse matrix, optional
        Items removed from each user's ranking (their training items).
    ks : iterable of int, default (10, 20, 100)
        Cut-offs; a K larger than the catalogue is allowed (everything is ranked).
    metrics : iterable of {"hr", "ndcg", "mrr", "recall"}
    ties : {"first", "pessimistic"}, default "first"
        How equal scores are ordered (see the module docstring).
    batch_size : int, default 256
    per_user : bool, default False
        Return each metric per test user instead of its mean (for a paired
        comparison of two scorers, :func:`paired_difference`).

    Returns
    -------
    dict
        ``{"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "recall@10": ..., ...}``:
        floats, or with ``per_user`` one array per metric whose values follow
        the user indices in the extra key ``"users"`` (ascending).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from rarec.metrics import full_ranking_metrics
    >>> scores = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3]])
    >>> test = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1]]))
    >>> full_ranking_metrics(scores, test, ks=[1], metrics=["hr"])
    {'hr@1': 0.0}
    """
    ks = _check_ks(ks)
    n_users, n_items = (test.n_users, test.n_items) if isinstance(test, InteractionLog) else test.shape
    targets = _as_csr(test, n_users, n_items, "test")
    excluded = _as_csr(exclude, n_users, n_items, "exclude")
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    all_ranks, all_groups = [], []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        raw = _score_block(scorer, batch, n_items)  # (B, n_items)
        masked = raw.clone()
        ex = excluded[batch].tocoo()
        masked[torch.as_tensor(ex.row, dtype=torch.long), torch.as_tensor(ex.col, dtype=torch.long)] = -torch.inf
        tg = targets[batch].tocoo()
        rows = torch.as_tensor(tg.row, dtype=torch.long)  # (P,)
        items = torch.as_tensor(tg.col, dtype=torch.long)  # (P,)
        masked[rows, items] = raw[rows, items]  # held-out items stay in the list even if also excluded
        step = max(1, _BLOCK_ELEMENTS // max(n_items, 1))
        all_items = torch.arange(n_items)
        for p0 in range(0, rows.shape[0], step):
            r, it = rows[p0:p0 + step], items[p0:p0 + step]
            competitors = masked[r]  # (p, n_items)
            ranks = ranks_against_candidates(masked[r, it], it, competitors, all_items.expand_as(competitors), ties)
            all_ranks.append(ranks.numpy())
            all_groups.append(batch[r.numpy()])
    if not all_ranks:
        raise ValueError("the test set holds no interactions to evaluate.")
    return metrics_from_ranks(np.concatenate(all_ranks), np.concatenate(all_groups), ks, metrics, per_user=per_user)


def sampled_ranking_metrics(
    scorer: Scorer | np.ndarray | torch.Tensor,
    test: InteractionLog | sp.spmatrix,
    exclude: InteractionLog | sp.spmatrix | None = None,
    *,
    n_negatives: int = 100,
    ks: Iterable[int] = (1, 5, 10),
    metrics: Iterable[str] = METRICS,
    ties: str = "first",
    random_state: int | np.random.RandomState | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Rank each held-out item against ``n_negatives`` sampled items.

    The older protocol of many papers (e.g. 1 positive + 100 negatives). Each
    held-out (user, item) pair gets its own negatives, drawn uniformly without
    replacement from the items that are neither excluded for the user nor
    held out for the user; a user with fewer such items gets all of them.
    Metrics are averaged over pairs. Prefer :func:`full_ranking_metrics`:
    sampled metrics can order models differently (Krichene & Rendle, 2020).

    Parameters are those of :func:`full_ranking_metrics`, plus
    ``n_negatives`` and ``random_state`` (same seed, same negatives).
    """
    ks = _check_ks(ks)
    if not isinstance(n_negatives, int | np.integer) or n_negatives < 1:
        raise ValueError(f"The 'n_negatives' parameter must be an int in [1, inf). Got {n_negatives!r} instead.")
    rng = check_random_state(random_state)
    n_users, n_items = (test.n_users, test.n_items) if isinstance(test, InteractionLog) else test.shape
    targets = _as_csr(test, n_users, n_items, "test")
    excluded = _as_csr(exclude, n_users, n_items, "exclude")
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    all_ranks = []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        raw = _score_block(scorer, batch, n_items)
        for row, u in enumerate(batch):
            held = targets.indices[targets.indptr[u]:targets.indptr[u + 1]]
            blocked = np.zeros(n_items, dtype=bool)
            blocked[excluded.indices[excluded.indptr[u]:excluded.indptr[u + 1]]] = True
            blocked[held] = True
            pool = np.flatnonzero(~blocked)
            n_neg = min(n_negatives, pool.size)
            negs = np.stack([rng.choice(pool, size=n_neg, replace=False) for _ in held])  # (T, n_neg)
            neg_items = torch.as_tensor(negs, dtype=torch.long)
            held_t = torch.as_tensor(held, dtype=torch.long)
            ranks = ranks_against_candidates(raw[row, held_t], held_t, raw[row][neg_items], neg_items, ties)
            all_ranks.append(ranks.numpy())
    if not all_ranks:
        raise ValueError("the test set holds no interactions to evaluate.")
    ranks = np.concatenate(all_ranks)
    return metrics_from_ranks(ranks, np.arange(ranks.shape[0]), ks, metrics)
