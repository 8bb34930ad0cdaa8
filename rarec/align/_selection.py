"""The paper's tailored data construction: denoise, then spread the budget over users and items.

RA-Rec aligns on a small, carefully chosen share of the (history, next item)
pairs. Three steps:

1. **Denoise**: drop a sample whose target's text shares no content word
   (lower-cased, alphabetic, stop words removed) with the texts of its history
   window; such a transition carries no signal a text model could align to.
2. **User diversity**: bucket samples by their user's history length (quantiles).
3. **Item diversity**: bucket samples by their target's popularity (quantiles).

The sample budget (``fraction`` of all candidates) is spread evenly over the
non-empty (user bucket x item bucket) cells; what a small cell cannot use is
handed on to the others.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence

import numpy as np

from .._validation import check_float, check_int, check_option
from ..data import ItemText
from ._samples import AlignmentSamples, uniform_subset

logger = logging.getLogger(__name__)

STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have he her his i in is it its of on or our she so that the their "
    "them there they this to was we were what when which who will with you your not no all any can do does did "
    "into out up down over under again more most other some such only own same than too very just s t ii iii".split()
)
_WORD = re.compile(r"[a-z]+")


def content_words(text: ItemText | None) -> frozenset[str]:
    """Lower-cased alphabetic words of a title and its categories, stop words removed."""
    if text is None:
        return frozenset()
    words = _WORD.findall(" ".join([text.title, *text.categories]).lower())
    return frozenset(w for w in words if w not in STOP_WORDS and len(w) > 1)


def quantile_buckets(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket index 0..n_buckets-1 of each value by quantiles (ties share a bucket)."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, n_buckets + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right")


def spread_budget(cell_sizes: np.ndarray, budget: int) -> np.ndarray:
    """How many samples to take from each cell: equal shares, what small cells cannot use goes to the rest."""
    take = np.zeros_like(cell_sizes)
    open_cells = cell_sizes > 0
    left = min(budget, int(cell_sizes.sum()))
    while left > 0 and open_cells.any():
        share = max(left // int(open_cells.sum()), 1)
        for cell in np.flatnonzero(open_cells):
            add = min(share, cell_sizes[cell] - take[cell], left)
            take[cell] += add
            left -= add
            if take[cell] == cell_sizes[cell]:
                open_cells[cell] = False
            if left == 0:
                break
    return take


def select_alignment_samples(
    samples: AlignmentSamples,
    sequences: Sequence[np.ndarray],
    item_texts: Sequence[ItemText | None] | None,
    fraction: float,
    rng: np.random.Generator,
    *,
    selection: str = "tailored",
    history_window: int = 10,
    n_user_buckets: int = 4,
    n_item_buckets: int = 4,
    max_denoised_share: float = 0.5,
) -> tuple[AlignmentSamples, dict[str, int]]:
    """Choose ``round(fraction * len(samples))`` training samples.

    Parameters
    ----------
    samples : AlignmentSamples
        Every candidate (history, next item) pair.
    sequences : list of ndarray
        Each user's training sequence (item indices), to read history windows.
    item_texts : list of ItemText or None, optional
        Texts in item-index order; without any text the denoise step is skipped
        (with a warning).
    fraction : float in (0, 1]
        Share of the candidates to keep.
    rng : numpy Generator
        Same seed, same subset.
    selection : {"tailored", "random"}
        ``"random"``: a uniform subset, no denoising (the baseline).
    history_window : int
        Most recent history items whose words count for denoising.
    n_user_buckets, n_item_buckets : int
        Quantile buckets of user history length and of target popularity.
    max_denoised_share : float, default 0.5
        When denoising would remove more than this share of the candidates
        (titles that share few words, such as artist names), it is skipped
        with a warning that gives the counts: it would judge the titles,
        not the transitions.

    Returns
    -------
    (AlignmentSamples, dict)
        The chosen samples (in their original order) and a report of how many
        each step removed: ``candidates``, ``removed_by_denoise``,
        ``removed_by_budget``, ``selected``, ``cells``.
    """
    check_float(fraction, "sample_fraction", "select_alignment_samples", 0.0, 1.0, low_open=True)
    check_option(selection, "selection", "select_alignment_samples", ("tailored", "random"))
    check_int(history_window, "history_window", "select_alignment_samples", 1)
    check_int(n_user_buckets, "n_user_buckets", "select_alignment_samples", 1)
    check_int(n_item_buckets, "n_item_buckets", "select_alignment_samples", 1)
    check_float(max_denoised_share, "max_denoised_share", "select_alignment_samples", 0.0, 1.0)
    n = len(samples)
    budget = max(1, int(round(fraction * n)))
    report = {"candidates": n, "removed_by_denoise": 0, "removed_by_budget": 0, "selected": 0, "cells": 1}
    if selection == "random":
        report.update(removed_by_budget=n - budget, selected=budget)
        return uniform_subset(samples, budget, rng), report

    candidates = np.arange(n)
    if item_texts is None or all(t is None for t in item_texts):
        warnings.warn("no item text: the denoise step of the tailored selection is skipped.", stacklevel=2)
    else:
        words = [content_words(t) for t in item_texts]
        noisy = np.zeros(n, dtype=bool)
        for row, (u, end, target) in enumerate(zip(samples.users, samples.ends, samples.targets)):
            target_words = words[target]
            window = sequences[u][max(0, end - history_window):end]
            history_words = frozenset().union(*(words[i] for i in window))
            # Only judge samples where both sides have words: a missing title is no evidence of noise.
            noisy[row] = bool(target_words) and bool(history_words) and not (target_words & history_words)
        if noisy.sum() > max_denoised_share * n:
            warnings.warn(f"denoising would remove {int(noisy.sum()):,} of {n:,} candidate samples "
                          f"({noisy.mean():.0%}): the titles share too few words for it to judge transitions, "
                          "so the denoise step is skipped.", UserWarning, stacklevel=2)
        else:
            candidates = candidates[~noisy]
            report["removed_by_denoise"] = int(noisy.sum())
            if len(candidates) < budget:
                warnings.warn(f"denoising removed {int(noisy.sum()):,} of {n:,} candidate samples; "
                              f"{len(candidates):,} are left for a budget of {budget:,}.", UserWarning, stacklevel=2)
    if len(candidates) == 0:
        report.update(removed_by_budget=0, selected=0, cells=0)
        return samples.subset(candidates), report
    lengths = np.array([len(sequences[u]) for u in samples.users[candidates]])
    popularity = np.bincount(samples.targets, minlength=int(samples.targets.max()) + 1)[samples.targets[candidates]]
    user_bucket = quantile_buckets(lengths, n_user_buckets)
    item_bucket = quantile_buckets(popularity, n_item_buckets)
    cell = user_bucket * n_item_buckets + item_bucket  # (C,)
    cell_sizes = np.bincount(cell, minlength=n_user_buckets * n_item_buckets)
    take = spread_budget(cell_sizes, budget)
    chosen = [rng.choice(candidates[cell == c], size=int(k), replace=False) for c, k in enumerate(take) if k > 0]
    keep = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    report.update(removed_by_budget=len(candidates) - len(keep), selected=len(keep), cells=int((cell_sizes > 0).sum()))
    logger.info("tailored selection: %s", report)
    return samples.subset(keep), report
