"""Splits of an interaction log that never train on a user's future."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from sklearn.model_selection import BaseCrossValidator

from .._validation import check_int
from ..data import InteractionLog


class LogSplit(NamedTuple):
    """Train, validation (``None`` when not asked for) and test parts sharing one id map."""

    train: InteractionLog
    valid: InteractionLog | None
    test: InteractionLog

    @property
    def before_test(self) -> InteractionLog:
        """Train plus validation: what to refit on for the test, and to exclude from its rankings."""
        return self.train if self.valid is None else InteractionLog.concat(self.train, self.valid)


def _steps_from_end(log: InteractionLog) -> tuple[np.ndarray, np.ndarray]:
    """For every row: its position counted from the user's last row (0 = last), and the user's length."""
    lengths = log.user_lengths()[log.user_codes]
    return lengths - 1 - log.positions(), lengths


def leave_last_out(log: Any, n_test: int = 1, n_valid: int = 1) -> LogSplit:
    """Hold out each user's last ``n_test`` interactions for test and the ``n_valid`` before for validation.

    Order is by timestamp, ties in row order (see :class:`rarec.data.InteractionLog`).
    A user with at most ``n_test + n_valid`` interactions keeps all of them in
    train: no user is dropped from the log, and no user is evaluated without
    a history.

    Parameters
    ----------
    log : InteractionLog or array-like
        Anything :meth:`InteractionLog.from_any` accepts.
    n_test, n_valid : int
        Interactions per user for test and validation; ``n_valid=0`` gives no validation part.

    Returns
    -------
    LogSplit
        ``(train, valid, test)``; ``valid`` is ``None`` when ``n_valid == 0``.

    Examples
    --------
    >>> from rarec.data import make_interactions
    >>> from rarec.model_selection import leave_last_out
    >>> log, _ = make_interactions(n_users=20, random_state=0)
    >>> train, valid, test = leave_last_out(log)
    >>> len(test) == len(valid) == 20
    True
    """
    log = InteractionLog.from_any(log)
    check_int(n_test, "n_test", "leave_last_out", 1)
    check_int(n_valid, "n_valid", "leave_last_out", 0)
    from_end, lengths = _steps_from_end(log)
    eligible = lengths > n_test + n_valid
    test = eligible & (from_end < n_test)
    valid = eligible & (from_end >= n_test) & (from_end < n_test + n_valid)
    train = ~(test | valid)
    return LogSplit(log.subset(train), log.subset(valid) if n_valid else None, log.subset(test))


def temporal_split(log: Any, test_size: float = 0.2, by: str = "user") -> tuple[InteractionLog, InteractionLog]:
    """Split by time into ``(train, test)``; see :class:`TemporalSplit`."""
    log = InteractionLog.from_any(log)
    train_idx, test_idx = next(TemporalSplit(test_size=test_size, by=by)._split_log(log))
    return log.subset(train_idx), log.subset(test_idx)


class LeaveLastOut(BaseCrossValidator):
    """Cross-validation by holding out each user's most recent interaction(s).

    Fold ``f`` (``f = 0`` first) tests on every user's ``(f+1)``-th most
    recent interaction and trains on everything that came *before* it; the
    rows after it are in neither part, so no fold trains on the future. A
    user needs more than ``f + 1`` interactions to be tested in fold ``f``;
    otherwise all the rows before the held-out position stay in train.

    Use it where row-wise ``KFold`` would leak: ``GridSearchCV(rec, grid,
    cv=LeaveLastOut())``. To keep a final test set untouched, split it off
    first with :func:`leave_last_out` and cross-validate on the rest.

    Parameters
    ----------
    n_splits : int, default 1
        Number of folds, each one step further back in time.

    Examples
    --------
    >>> import numpy as np
    >>> from rarec.model_selection import LeaveLastOut
    >>> X = np.array([[1, 10, 1], [1, 11, 2], [1, 12, 3], [2, 10, 5], [2, 12, 6]])
    >>> [(tr.tolist(), te.tolist()) for tr, te in LeaveLastOut().split(X)]
    [([0, 1, 3], [2, 4])]
    """

    def __init__(self, n_splits: int = 1) -> None:
        self.n_splits = n_splits

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Number of folds."""
        return self.n_splits

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_rows, test_rows)`` index arrays into ``X``."""
        check_int(self.n_splits, "n_splits", type(self).__name__, 1)
        log = InteractionLog.from_any(X)
        from_end, lengths = _steps_from_end(log)
        for fold in range(self.n_splits):
            eligible = lengths > fold + 1
            test = eligible & (from_end == fold)
            # Short users are never tested; their whole history stays in train.
            train = (from_end > fold) | ~eligible
            yield np.flatnonzero(train), np.flatnonzero(test)


class TemporalSplit(BaseCrossValidator):
    """A single split by time: the most recent ``test_size`` share goes to test.

    Parameters
    ----------
    test_size : float in (0, 1), default 0.2
        Share of interactions held out.
    by : {"user", "global"}, default "user"
        ``"user"``: the last ``ceil(test_size * n_u)`` interactions of every
        user with at least 2 (at least one stays in train).
        ``"global"``: one cut-off time for everyone; rows strictly after the
        ``1 - test_size`` quantile of timestamps are tested (needs timestamps).
        Users whose every row is after the cut-off are then test-only (cold start).

    Examples
    --------
    >>> import numpy as np
    >>> from rarec.model_selection import TemporalSplit
    >>> X = np.array([[1, 10, 1], [1, 11, 2], [1, 12, 3], [1, 13, 4], [2, 10, 5]])
    >>> [(tr.tolist(), te.tolist()) for tr, te in TemporalSplit(test_size=0.25).split(X)]
    [([0, 1, 2, 4], [3])]
    """

    def __init__(self, test_size: float = 0.2, by: str = "user") -> None:
        self.test_size = test_size
        self.by = by

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Always 1."""
        return 1

    def split(self, X: Any, y: Any = None, groups: Any = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield one ``(train_rows, test_rows)`` pair of index arrays into ``X``."""
        yield from self._split_log(InteractionLog.from_any(X))

    def _split_log(self, log: InteractionLog) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not isinstance(self.test_size, float | int) or not 0 < self.test_size < 1:
            raise ValueError(
                f"The 'test_size' parameter of TemporalSplit must be a float in (0, 1). Got {self.test_size!r} instead."
            )
        if self.by == "user":
            from_end, lengths = _steps_from_end(log)
            n_test = np.minimum(np.ceil(self.test_size * lengths - 1e-9), lengths - 1)
            test = from_end < n_test
        elif self.by == "global":
            if not log.has_timestamps:
                raise ValueError("TemporalSplit(by='global') needs timestamps; the log has none.")
            cutoff = np.quantile(log.timestamps, 1.0 - self.test_size, method="lower")
            test = log.timestamps > cutoff
        else:
            raise ValueError(f"The 'by' parameter of TemporalSplit must be 'user' or 'global'. Got {self.by!r} instead.")
        yield np.flatnonzero(~test), np.flatnonzero(test)

