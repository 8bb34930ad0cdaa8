"""Ranking scores: the LLM two-tower score, optionally fused with the CF backbone's score.

RA-Rec ranks by ``h_u · h_i`` alone. ``score_fusion=w`` (not in the paper) adds
the CF backbone's own score: both score rows are standardised over the
catalogue (zero mean, unit spread per user), so that ``w`` weighs two
quantities on the same scale, and ``w = 0`` keeps the LLM ranking unchanged.
"""

from __future__ import annotations

import torch

#: Weights tried by ``score_fusion="auto"`` on the validation items.
#: 8 and 16 were added after MovieLens-100K chose the largest weight every time (docs/benchmarks.md).
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def standardise(scores: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Each row shifted to mean 0 and scaled to standard deviation 1 (constant rows become 0).

    ``moments`` gives each row's (mean, std) when ``scores`` holds only a slice
    of the catalogue (see :func:`rarec._topk.row_moments`).
    """
    mean, std = (scores.mean(dim=1), scores.std(dim=1)) if moments is None else moments
    return (scores - mean[:, None]) / std[:, None].clamp_min(1e-12)


def cf_scores(user_cf: torch.Tensor, item_cf: torch.Tensor) -> torch.Tensor:
    """The CF backbone's scores (n, n_items): the best dot product over each user's K vectors.

    ``user_cf`` is (n, K, d), ``item_cf`` (n_items, d), as the backbones return them.
    """
    return (user_cf @ item_cf.T).amax(dim=1)


def fuse(llm: torch.Tensor, cf: torch.Tensor | None, weight: float) -> torch.Tensor:
    """``llm`` unchanged when ``weight`` is 0, else ``standardise(llm) + weight * standardise(cf)``."""
    if weight == 0:
        return llm
    if cf is None:
        raise ValueError("score fusion needs the CF scores of these users.")
    return standardise(llm) + weight * standardise(cf)
