"""A teacher that adds item co-occurrence to the backbone's ranking (``cooccurrence_teacher``).

The alignment module distils the CF backbone's softmax over the candidates.
A sequence backbone such as SASRec reads the last ``max_history`` items in
order; EASE (:class:`rarec.cf.EASE`) reads the whole history as a set, and
the two fused rank better than either (on ML-100K's validation items,
SASRec + 0.25 x EASE: NDCG@10 0.1294 against SASRec's 0.1161;
docs/benchmarks.md). The teacher's logits become the backbone's plus
``weight`` x EASE's score of each sample's whole history, the weight in
units of the backbone's score spread so that it means the same on any data.

EASE is only as good as the histories it is fitted on: on 4,000 of Amazon
Beauty's 22,363 users the fused teacher ranked the validation items worse
than SASRec alone (NDCG@10 0.0469 against 0.0525), on all of them better
(0.0558). So when the fit has validation items, the trainer first ranks
them with the backbone alone and with the fused teacher
(:meth:`CooccurrenceTeacher.validation_check`) and distils the backbone
alone unless the teacher wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ..cf import EASE, history_matrix
from ..metrics import full_ranking_metrics
from ._samples import AlignmentSamples

logger = logging.getLogger(__name__)

#: Samples whose score spreads set the scale (a fixed draw: the fit's own random stream is not touched).
_PROBE = 1000
#: Validation users the check ranks at most (a fixed draw, as the probe).
_CHECK_USERS = 2000
#: Users the check scores at once (a multi-interest backbone's scores are K x this x the catalogue).
_CHECK_BATCH = 256


def cooccurrence_teacher(weight: float, sequences: Sequence[np.ndarray], samples: AlignmentSamples,
                         backbone_scores: Callable[[np.ndarray], torch.Tensor], n_items: int,
                         scale_from: int | None = None, ease: EASE | None = None) -> CooccurrenceTeacher | None:
    """The teacher ``extra(rows, candidates)`` -> (len(rows), M) logits to add to the backbone's: ``weight`` x EASE's
    score of each sample's whole history (items before its target) for each candidate (every item when ``None``).

    EASE is fitted on ``sequences`` (the fit's training sequences) unless a fitted ``ease`` is given (one fitted on
    the same item index, e.g. on more users than the fit sees, as a given backbone may have been). One unit of
    ``weight`` is the backbone's score spread: the mean over probe samples (drawn among the first ``scale_from``,
    default all) of the std of ``backbone_scores(rows)`` (the catalogue's scores) over that of EASE's. ``None``,
    with a warning, for a catalogue too large for EASE's dense weights.
    """
    if not EASE.fits(n_items, "cooccurrence_teacher", "distilling from the CF backbone alone"):
        return None
    if ease is None:
        ease = EASE().fit(sequences, n_items)
    elif tuple(ease.weights_.shape) != (n_items, n_items):
        raise ValueError(f"the fitted EASE has weights of shape {tuple(ease.weights_.shape)}; this fit's catalogue "
                         f"has {n_items} items: fit it on the same item index.")
    histories = history_matrix([sequences[u][:e] for u, e in zip(samples.users, samples.ends)], n_items)
    probe = np.sort(np.random.default_rng(0).permutation(scale_from or len(samples))[:_PROBE])
    spread = float(ease.score(histories[probe]).std(1).mean())
    scale = weight * float(backbone_scores(probe).float().std(1).mean()) / max(spread, 1e-12)
    logger.info("cooccurrence teacher: EASE on %d items, scale %.4g", n_items, scale)
    return CooccurrenceTeacher(ease, histories, scale)


class CooccurrenceTeacher:
    """``teacher(rows, candidates)`` -> ``scale`` x EASE's scores (len(rows), M) of the sample histories ``rows``
    (rows of ``histories``) for ``candidates`` (every item when ``None``). Built by :func:`cooccurrence_teacher`."""

    def __init__(self, ease: EASE, histories: sp.csr_matrix, scale: float) -> None:
        self.ease, self.histories, self.scale = ease, histories, scale

    def __call__(self, rows: np.ndarray, candidates: np.ndarray | None) -> torch.Tensor:
        return self.ease.score(self.histories[np.asarray(rows)], candidates) * self.scale

    def validation_check(self, sequences: Sequence[np.ndarray], held_out: sp.csr_matrix,
                         backbone_scores: Callable[[list[np.ndarray], np.ndarray], torch.Tensor]) -> dict:
        """Whether the teacher ranks the validation items better than the backbone alone
        (:func:`validation_check`, the teacher scoring each user's whole training sequence)."""
        return validation_check(sequences, held_out, backbone_scores,
                                lambda histories, seen: self.scale * self.ease.score(seen), "teacher")


def validation_check(sequences: Sequence[np.ndarray], held_out: sp.csr_matrix,
                     backbone_scores: Callable[[list[np.ndarray], np.ndarray], torch.Tensor],
                     added_scores: Callable[[list[np.ndarray], sp.csr_matrix], torch.Tensor], name: str,
                     neighbours: np.ndarray | None = None) -> dict:
    """Whether adding ``added_scores`` to the backbone's ranks the validation items better than the backbone alone.

    ``held_out`` (n_users, n_items) marks each user's validation items; ``backbone_scores(histories, users)``
    gives the backbone's catalogue scores (len(users), n_items) of users described by their whole training
    ``sequences``, ``added_scores(histories, seen)`` the scores to add (``seen``: the histories' multi-hot rows).
    Up to 2,000 users with validation items (a fixed draw) are ranked, their training items excluded. Returns
    both validation NDCG@10s (the second under ``valid_ndcg@10_with_<name>``) and ``kept``: whether the sum's is
    higher.

    With ``neighbours`` (each item's nearest other item by text, ``-1`` for none) the validation items are also
    ranked *as if added after fit*: an added item borrows its nearest known item's ID vector
    (:mod:`._cold_items`), so its backbone score is its neighbour's, while ``added_scores`` stays its own (items
    without a neighbour are left out of this second ranking; without any, it is skipped). ``kept`` is then
    whether the mean of the two relative changes of NDCG@10 (known, as added) is positive; both as-added
    NDCG@10s are returned too (``valid_ndcg@10_as_added_backbone`` and ``..._as_added_with_<name>``).
    """
    users = np.flatnonzero(held_out.getnnz(axis=1) > 0)
    users = np.sort(np.random.default_rng(0).permutation(users)[:_CHECK_USERS])
    histories = [np.asarray(sequences[u]) for u in users]
    seen = history_matrix(histories, held_out.shape[1])
    held = held_out[users].tocsr()
    borrowing = None  # the validation items that borrow a neighbour's ID vector when added after fit
    if neighbours is not None:
        borrowing = held.multiply(sp.csr_matrix(neighbours[None, :] >= 0)).tocsr()
        borrowing.eliminate_zeros()

    # each batch of users is scored once (backbone and added scores), then ranked up to four ways:
    # (with_added, as_added) = (False, False), (True, False), and with ``borrowing`` (False, True), (True, True)
    per_user: dict[tuple[bool, bool], list[np.ndarray]] = {}
    for start in range(0, len(users), _CHECK_BATCH):
        rows = np.arange(start, min(start + _CHECK_BATCH, len(users)))
        batch = [histories[r] for r in rows]
        alone = backbone_scores(batch, users[rows]).float()
        extra = added_scores(batch, seen[rows]).float()
        for as_added in (False, True) if borrowing is not None else (False,):
            targets = (borrowing if as_added else held)[rows]
            if not targets.nnz:
                continue
            scores = alone
            if as_added:  # each validation item's backbone score is its neighbour's
                pairs = targets.tocoo()
                scores = alone.clone()
                scores[torch.as_tensor(pairs.row), torch.as_tensor(pairs.col)] = \
                    alone[torch.as_tensor(pairs.row), torch.as_tensor(neighbours[pairs.col])]
            for with_added in (False, True):
                found = full_ranking_metrics(scores + extra if with_added else scores, targets, seen[rows], ks=[10],
                                             metrics=["ndcg"], batch_size=len(rows), per_user=True)
                per_user.setdefault((with_added, as_added), []).append(found["ndcg@10"])

    def ndcg(with_added: bool, as_added: bool) -> float:
        return float(np.concatenate(per_user[with_added, as_added]).mean())

    known = [ndcg(with_added, False) for with_added in (False, True)]
    found = {"valid_ndcg@10_backbone": known[0], f"valid_ndcg@10_with_{name}": known[1]}
    if (False, True) not in per_user:  # no validation item has a neighbour by text (or no neighbours given)
        kept = known[1] > known[0]
    else:
        added = [ndcg(with_added, True) for with_added in (False, True)]
        found.update({"valid_ndcg@10_as_added_backbone": added[0], f"valid_ndcg@10_as_added_with_{name}": added[1]})
        kept = (_relative_change(*known) + _relative_change(*added)) / 2 > 0
        logger.info("validation check of the %s, the items as if added after fit: NDCG@10 %.4f with it, %.4f with the "
                    "backbone alone", name, added[1], added[0])
    logger.info("validation check of the %s: NDCG@10 %.4f with it, %.4f with the backbone alone: %s", name,
                known[1], known[0], "kept" if kept else "not used")
    return {**found, "kept": bool(kept)}


def _relative_change(before: float, after: float) -> float:
    return (after - before) / before if before > 0 else float(after > before)
