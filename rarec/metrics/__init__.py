"""Ranking metrics for recommendation: HR, NDCG, MRR and Recall at K."""

from ._paired import paired_difference
from ._ranking import (
    METRICS,
    full_ranking_metrics,
    metrics_from_ranks,
    ranks_against_candidates,
    sampled_ranking_metrics,
)

__all__ = [
    "METRICS",
    "full_ranking_metrics",
    "metrics_from_ranks",
    "paired_difference",
    "ranks_against_candidates",
    "sampled_ranking_metrics",
]
