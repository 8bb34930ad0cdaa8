"""Paired comparison of two recommenders on the same evaluated users.

Two models' mean NDCG@10 over a few hundred users can differ by less than
the noise of which users happened to be held out. Comparing them user by
user removes what the users share (how hard each one is to predict), so the
standard error of the mean per-user difference says whether a gap is real.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PerUser = Mapping[str, Any]


def _per_user_values(results: PerUser | Sequence[PerUser], metric: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    runs = [results] if isinstance(results, Mapping) else list(results)
    if not runs:
        raise ValueError(f"{name} holds no per-user results.")
    users = np.asarray(runs[0].get("users", []))
    values = []
    for run in runs:
        if "users" not in run or metric not in run or np.ndim(run[metric]) != 1:
            raise ValueError(f"{name} must be per-user results holding 'users' and {metric!r} (evaluate with "
                             "per_user=True).")
        if not np.array_equal(np.asarray(run["users"]), users):
            raise ValueError(f"the runs in {name} were evaluated on different users; a paired comparison needs "
                             "the same users in the same order.")
        values.append(np.asarray(run[metric], dtype=np.float64))
    return users, np.mean(values, axis=0)


def paired_difference(first: PerUser | Sequence[PerUser], second: PerUser | Sequence[PerUser],
                      metric: str = "ndcg@10") -> dict[str, float]:
    """Mean per-user difference ``first - second`` of one metric, with its standard error.

    Parameters
    ----------
    first, second : dict or sequence of dicts
        Per-user results, as returned by ``full_ranking_metrics(...,
        per_user=True)`` or ``RARecommender.evaluate(..., per_user=True)``.
        A sequence (say, one model fitted with several seeds) is averaged
        per user before the difference is taken. Every result must cover
        the same users in the same order.
    metric : str, default "ndcg@10"

    Returns
    -------
    dict
        ``n_users``; ``mean_difference``; ``standard_error`` (the sample
        standard deviation of the per-user differences over sqrt(n), NaN
        for one user); ``ci95_low`` / ``ci95_high`` (mean ± 1.96 standard
        errors, the normal approximation); ``wins`` / ``losses`` / ``ties``
        (users for whom ``first`` is above / below / equal to ``second``).

    Examples
    --------
    >>> import numpy as np
    >>> a = {"users": np.arange(4), "ndcg@10": np.array([1.0, 0.5, 0.0, 0.0])}
    >>> b = {"users": np.arange(4), "ndcg@10": np.array([0.5, 0.5, 0.0, 0.5])}
    >>> paired_difference(a, b)["mean_difference"]
    0.0
    """
    users, a = _per_user_values(first, metric, "first")
    other_users, b = _per_user_values(second, metric, "second")
    if not np.array_equal(users, other_users):
        raise ValueError("first and second were evaluated on different users; a paired comparison needs the same "
                         "users in the same order.")
    diff = a - b
    n = diff.shape[0]
    mean = float(diff.mean()) if n else math.nan
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"n_users": n, "mean_difference": mean, "standard_error": se,
            "ci95_low": mean - 1.96 * se, "ci95_high": mean + 1.96 * se,
            "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()), "ties": int((diff == 0).sum())}
