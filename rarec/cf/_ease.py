"""EASE, an item-item model in closed form: the alignment trainer's second teacher.

EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW
2019) scores an item by summing learned weights from each item of the
user's history. The weights ``B`` (n_items x n_items, zero diagonal) are
the ridge regression of every user's binary row on their other items:

    P = (X'X + l2 I)^-1,   B = -P / diag(P),   diag(B) = 0.

It reads the whole history as a set, which a sequence model such as SASRec
(the last ``max_len`` items, in order) does not: fused with SASRec's scores
it ranks ML-100K's validation items well above SASRec alone
(docs/benchmarks.md), so the alignment module distils from both.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch


def history_matrix(histories: Sequence[np.ndarray], n_items: int, mean: bool = False) -> sp.csr_matrix:
    """Binary rows (len(histories), n_items), float32: an item counts once however often it recurs. With
    ``mean`` each row is divided by its number of distinct items, so that ``rows @ vectors`` is each history's
    mean item vector (zeros for an empty history)."""
    lengths = [len(h) for h in histories]
    rows = np.repeat(np.arange(len(histories)), lengths)
    items = np.concatenate(histories).astype(np.int64) if sum(lengths) else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, items)), shape=(len(histories), n_items))
    matrix.data[:] = 1.0  # duplicates were summed
    if mean:
        matrix = sp.diags(1.0 / np.maximum(matrix.sum(1).A1, 1.0)).astype(np.float32) @ matrix
    return sp.csr_matrix(matrix)


class EASE:
    """EASE item-item weights fitted on interaction histories.

    Parameters
    ----------
    l2 : float, default 200.0
        The ridge penalty (200 ranked ML-100K's validation items best among 200 and 500 when fused with
        SASRec, docs/benchmarks.md).

    Attributes
    ----------
    MAX_ITEMS : int
        The largest catalogue it is fitted for, 20,000: its weights are a dense n_items² matrix (1.6 GB at
        20,000 items, and computing the inverse needs twice that again).
    weights_ : torch.Tensor of float32, shape (n_items, n_items)
        ``B``, zero on the diagonal: ``scores = history_row @ B``.

    Examples
    --------
    >>> import numpy as np
    >>> from rarec.cf import EASE
    >>> ease = EASE(l2=1.0).fit([np.array([0, 1]), np.array([0, 1]), np.array([2])], n_items=3)
    >>> scores = ease.score([np.array([0])])[0]
    >>> bool(scores[1] > scores[2])
    True
    """

    MAX_ITEMS = 20_000

    #: histories scored together by :meth:`score`: the weight rows of their distinct items are gathered at once
    SCORE_CHUNK = 256

    def __init__(self, l2: float = 200.0) -> None:
        self.l2 = l2

    @classmethod
    def fits(cls, n_items: int, setting: str, instead: str) -> bool:
        """Whether a catalogue of ``n_items`` is within :attr:`MAX_ITEMS`; if not, warn that ``setting`` (the
        estimator parameter that asked for EASE) is skipped and ``instead`` is done."""
        if n_items <= cls.MAX_ITEMS:
            return True
        warnings.warn(f"{setting}: the catalogue has {n_items:,} items, more than EASE's {cls.MAX_ITEMS:,}; "
                      f"{instead}.", UserWarning, stacklevel=4)
        return False

    def fit(self, histories: Sequence[np.ndarray], n_items: int) -> EASE:
        """Fit the weights on ``histories`` (item indices per user); returns self. Raises ``ValueError`` for a
        catalogue above :attr:`MAX_ITEMS` items."""
        import scipy.linalg

        if n_items > self.MAX_ITEMS:
            raise ValueError(f"EASE needs a dense {n_items} x {n_items} matrix; it is fitted for up to "
                             f"{self.MAX_ITEMS:,} items.")
        x = history_matrix(histories, n_items)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices(n_items)] += self.l2
        inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        del gram
        weights = inverse / -np.diag(inverse)
        weights[np.diag_indices(n_items)] = 0.0
        self.weights_ = torch.as_tensor(weights.astype(np.float32))
        return self

    def score(self, histories: Sequence[np.ndarray] | sp.csr_matrix,
              candidates: np.ndarray | None = None) -> torch.Tensor:
        """Scores (len(histories), n_candidates) of ``candidates`` (every item when ``None``) for each history
        (item indices, or rows of :func:`history_matrix`)."""
        rows = sp.csr_matrix(histories if sp.issparse(histories) else history_matrix(histories,
                                                                                     self.weights_.shape[0]))
        columns = None if candidates is None else torch.as_tensor(np.asarray(candidates), dtype=torch.long)
        # A history names a few items, and only those rows of the weights count: a sparse product over them
        # skips the dense one over every item (on Amazon Beauty's 12,101 items, 16 histories took 2.4 ms against
        # 0.26 ms for 80 candidates, and 104 ms against 4.4 ms for every item; benchmarks/teacher_cost.py).
        # Chunks of histories bound the weight rows gathered at once.
        parts = []
        for start in range(0, max(rows.shape[0], 1), self.SCORE_CHUNK):
            chunk = rows[start:start + self.SCORE_CHUNK]
            used, local = np.unique(chunk.indices, return_inverse=True)
            used = torch.as_tensor(used, dtype=torch.long)
            block = self.weights_[used] if columns is None else self.weights_[used[:, None], columns[None, :]]
            read = sp.csr_matrix((chunk.data, local.reshape(-1), chunk.indptr), shape=(chunk.shape[0], len(used)))
            parts.append(torch.from_numpy(np.asarray(read @ block.numpy(), dtype=np.float32)))
        return torch.cat(parts)
