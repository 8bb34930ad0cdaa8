"""The interaction log: who interacted with what, and when."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .._errors import DataFormatError
from ._ids import IdIndex, normalize_ids
from ._timestamps import parse_timestamps

#: Column names looked up, in order, when a DataFrame is passed in.
USER_COLUMNS = ("user_id", "user", "userId", "reviewerID", "uid")
ITEM_COLUMNS = ("item_id", "item", "itemId", "movieId", "asin", "iid")
TIME_COLUMNS = ("timestamp", "time", "unixReviewTime", "datetime", "date", "ts")


class InteractionLog:
    """An implicit-feedback interaction log with encoded ids.

    Rows keep the order they were given in. Users and items are encoded to
    contiguous indices (``users.encode``/``items.decode`` convert both ways);
    per-user sequences are ordered by timestamp, ties (and logs without
    timestamps) keeping row order.

    Parameters
    ----------
    user_codes, item_codes : ndarray of int64, shape (n_interactions,)
        Encoded user and item of every row.
    users, items : IdIndex
        The id maps. Indices may exist for users/items that have no row in this
        log (for example a test split shares the id maps of the full log).
    timestamps : ndarray of float64, shape (n_interactions,), optional
        Seconds (any monotone unit works); ``None`` means row order is time order.

    See Also
    --------
    InteractionLog.from_any : build a log from arrays, tuples or a DataFrame.

    Examples
    --------
    >>> from rarec.data import InteractionLog
    >>> log = InteractionLog.from_any([("ann", 10, 3.0), ("bob", 11, 1.0), ("ann", 11, 2.0)])
    >>> log.n_users, log.n_items, len(log)
    (2, 2, 3)
    >>> [log.items.decode(seq).tolist() for seq in log.user_sequences()]
    [[11, 10], [11]]
    """

    def __init__(
        self,
        user_codes: np.ndarray,
        item_codes: np.ndarray,
        users: IdIndex,
        items: IdIndex,
        timestamps: np.ndarray | None = None,
    ) -> None:
        self.user_codes = np.asarray(user_codes, dtype=np.int64)
        self.item_codes = np.asarray(item_codes, dtype=np.int64)
        self.users = users
        self.items = items
        self.timestamps = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
        n = self.user_codes.shape[0]
        assert self.item_codes.shape == (n,), "user and item codes differ in length"
        assert self.timestamps is None or self.timestamps.shape == (n,), "timestamps differ in length"
        assert n == 0 or (self.user_codes.min() >= 0 and self.user_codes.max() < len(users))
        assert n == 0 or (self.item_codes.min() >= 0 and self.item_codes.max() < len(items))
        self._order: np.ndarray | None = None

    # ------------------------------------------------------------------ build
    @classmethod
    def from_records(
        cls,
        users: Sequence[Any] | np.ndarray,
        items: Sequence[Any] | np.ndarray,
        timestamps: Sequence[Any] | np.ndarray | None = None,
        *,
        user_index: IdIndex | None = None,
        item_index: IdIndex | None = None,
        drop_duplicates: bool = False,
        source: str | None = None,
        rows: np.ndarray | None = None,
    ) -> InteractionLog:
        """Build a log from parallel columns of raw ids (and timestamps).

        Parameters
        ----------
        users, items : sequence
            Raw ids, int or str (not a mix).
        timestamps : sequence, optional
            Numbers, numeric strings, ISO dates or datetimes.
        user_index, item_index : IdIndex, optional
            Encode with these existing maps (unknown ids raise ``KeyError``)
            instead of building new ones from the sorted unique ids.
        drop_duplicates : bool, default False
            Repeated (user, item) pairs are kept by default (repeat consumption
            is real signal in many logs). ``True`` keeps only the earliest
            occurrence of each pair and warns with the number removed.
        source : str, optional
            A file name used in error messages.
        rows : ndarray of int, optional
            The 0-based file row of every value, for error messages.
        """
        raw_users = normalize_ids(_as_1d(users), "user ids", source, rows)
        raw_items = normalize_ids(_as_1d(items), "item ids", source, rows)
        if raw_users.shape != raw_items.shape:
            raise DataFormatError(
                f"users and items differ in length ({raw_users.shape[0]} vs {raw_items.shape[0]})."
            )
        if raw_users.shape[0] == 0:
            raise DataFormatError(f"{source or 'the interaction log'} is empty: no interactions to learn from.")
        ts = None
        if timestamps is not None:
            ts = parse_timestamps(_as_1d(timestamps), source, rows=rows)
            if ts.shape != raw_users.shape:
                raise DataFormatError(
                    f"timestamps differ in length from the ids ({ts.shape[0]} vs {raw_users.shape[0]})."
                )
        if user_index is None:
            user_index, ucodes = IdIndex.from_values(raw_users, kind="user", source=source)
        else:
            ucodes = user_index.encode(raw_users)
        if item_index is None:
            item_index, icodes = IdIndex.from_values(raw_items, kind="item", source=source)
        else:
            icodes = item_index.encode(raw_items)
        log = cls(ucodes, icodes, user_index, item_index, ts)
        return log.drop_duplicates() if drop_duplicates else log

    @classmethod
    def from_any(
        cls,
        X: Any,
        *,
        drop_duplicates: bool = False,
        source: str | None = None,
        user_index: IdIndex | None = None,
        item_index: IdIndex | None = None,
    ) -> InteractionLog:
        """Build a log from the forms users have at hand.

        ``X`` may be an :class:`InteractionLog`, a 2-D array or a list of
        tuples with columns ``(user, item[, timestamp])``, or a pandas
        DataFrame with columns named like ``user_id``, ``item_id`` and
        optionally ``timestamp`` (see ``USER_COLUMNS``, ``ITEM_COLUMNS``,
        ``TIME_COLUMNS``); a DataFrame without such names is read by position.
        With ``user_index``/``item_index`` the ids are encoded with those maps
        (an unknown id raises ``KeyError``), e.g. held-out data of a fitted model.
        """
        kwargs = dict(drop_duplicates=drop_duplicates, source=source, user_index=user_index, item_index=item_index)
        if isinstance(X, InteractionLog):
            same_maps = (user_index is None or user_index is X.users) and (item_index is None or item_index is X.items)
            if same_maps:
                return X.drop_duplicates() if drop_duplicates else X
            return cls.from_records(X.users.decode(X.user_codes), X.items.decode(X.item_codes), X.timestamps, **kwargs)
        if hasattr(X, "columns") and hasattr(X, "iloc"):  # a DataFrame, without importing pandas
            users, items, ts = _columns_from_frame(X)
            return cls.from_records(users, items, ts, **kwargs)
        if sp.issparse(X):
            raise DataFormatError(
                "sparse input is not supported: interactions are rows (user, item[, timestamp]); "
                "a user-item matrix can be turned into rows with scipy.sparse.find."
            )
        if isinstance(X, dict):
            raise DataFormatError(
                "interactions must be rows (user, item[, timestamp]); got a dict. "
                "Pass a 2-D array, a list of tuples or a DataFrame."
            )
        try:
            arr = X if isinstance(X, np.ndarray) else np.asarray(list(X), dtype=object)
        except TypeError:
            raise DataFormatError(
                f"interactions must be a 2-D array, a list of (user, item[, timestamp]) tuples or "
                f"a DataFrame; got {type(X).__name__}."
            ) from None
        if np.iscomplexobj(arr):
            raise DataFormatError("Complex data not supported: ids are integers or strings.")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            row, col = np.argwhere(~np.isfinite(arr))[0]
            raise DataFormatError(f"interactions hold NaN or infinity (first at row {row + 1}, column {col + 1}); "
                                  "every row needs a user id, an item id and, if given, a finite timestamp.")
        if arr.ndim == 1 and arr.size == 0:
            raise DataFormatError("the interaction log is empty: no interactions to learn from.")
        if arr.ndim != 2 or arr.shape[1] not in (2, 3):
            raise DataFormatError(
                "interactions must have 2 columns (user, item) or 3 (user, item, timestamp); "
                f"got an array of shape {arr.shape}."
            )
        ts = arr[:, 2] if arr.shape[1] == 3 else None
        return cls.from_records(arr[:, 0], arr[:, 1], ts, **kwargs)

    # ------------------------------------------------------------- properties
    def __len__(self) -> int:
        return int(self.user_codes.shape[0])

    @property
    def n_users(self) -> int:
        """Number of users in the id map (some may have no row in a split)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items in the id map."""
        return len(self.items)

    @property
    def has_timestamps(self) -> bool:
        return self.timestamps is not None

    def __repr__(self) -> str:
        return (
            f"InteractionLog(n_interactions={len(self)}, n_users={self.n_users}, "
            f"n_items={self.n_items}, timestamps={self.has_timestamps})"
        )

    # -------------------------------------------------------------- sequences
    @property
    def sequence_order(self) -> np.ndarray:
        """Row indices sorted by user, then timestamp; ties keep row order."""
        if self._order is None:
            if self.timestamps is None:
                self._order = np.argsort(self.user_codes, kind="stable")
            else:
                # lexsort sorts by the last key first and is stable, so rows with
                # equal (user, time) stay in file order.
                self._order = np.lexsort((self.timestamps, self.user_codes))
        return self._order

    def user_lengths(self) -> np.ndarray:
        """Number of interactions of every user index (zeros included)."""
        return np.bincount(self.user_codes, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Number of interactions of every item index (zeros included)."""
        return np.bincount(self.item_codes, minlength=self.n_items)

    def sequence_indptr(self) -> np.ndarray:
        """CSR-style offsets: user ``u``'s rows are ``sequence_order[indptr[u]:indptr[u+1]]``."""
        return np.concatenate([[0], np.cumsum(self.user_lengths())]).astype(np.int64)

    def positions(self) -> np.ndarray:
        """Position (0-based) of every row within its user's time-ordered sequence."""
        order = self.sequence_order
        indptr = self.sequence_indptr()
        pos = np.empty(len(self), dtype=np.int64)
        pos[order] = np.arange(len(self)) - np.repeat(indptr[:-1], self.user_lengths())
        return pos

    def user_sequences(self) -> list[np.ndarray]:
        """Item indices of every user, in time order (an empty array for users without rows)."""
        items = self.item_codes[self.sequence_order]
        return np.split(items, self.sequence_indptr()[1:-1])

    # ------------------------------------------------------------ transforms
    def subset(self, rows: np.ndarray) -> InteractionLog:
        """A log with the given rows (indices or boolean mask), sharing the id maps."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        ts = None if self.timestamps is None else self.timestamps[rows]
        return InteractionLog(self.user_codes[rows], self.item_codes[rows], self.users, self.items, ts)

    @classmethod
    def concat(cls, *logs: InteractionLog) -> InteractionLog:
        """Rows of several logs that share their id maps (e.g. parts of one split), in the order given."""
        if not logs:
            raise ValueError("concat needs at least one log.")
        first = logs[0]
        for other in logs[1:]:
            if other.users is not first.users and other.users != first.users or (
                other.items is not first.items and other.items != first.items
            ):
                raise ValueError("concat needs logs that share their user and item id maps.")
        with_time = [log.timestamps is not None for log in logs]
        if any(with_time) and not all(with_time):
            raise ValueError("concat cannot mix logs with and without timestamps.")
        ts = np.concatenate([log.timestamps for log in logs]) if all(with_time) else None
        return cls(
            np.concatenate([log.user_codes for log in logs]), np.concatenate([log.item_codes for log in logs]),
            first.users, first.items, ts,
        )

    def drop_duplicates(self) -> InteractionLog:
        """Keep the earliest occurrence of every (user, item) pair; warn with the count removed."""
        order = self.sequence_order
        pair = self.user_codes[order] * np.int64(max(self.n_items, 1)) + self.item_codes[order]
        _, first = np.unique(pair, return_index=True)
        keep = np.sort(order[first])
        removed = len(self) - keep.size
        if removed == 0:
            return self
        warnings.warn(f"drop_duplicates removed {removed} repeated (user, item) interaction(s).", stacklevel=3)
        return self.subset(keep)

    def reindexed(self) -> InteractionLog:
        """A log whose id maps hold only the users and items that have rows here."""
        keep_u = self.user_lengths() > 0
        keep_i = self.item_counts() > 0
        new_u = np.cumsum(keep_u) - 1
        new_i = np.cumsum(keep_i) - 1
        return InteractionLog(
            new_u[self.user_codes], new_i[self.item_codes],
            self.users.subset(keep_u), self.items.subset(keep_i), self.timestamps,
        )

    def to_csr(self, binary: bool = True) -> sp.csr_matrix:
        """The (n_users, n_items) matrix of interactions; counts when ``binary=False``."""
        data = np.ones(len(self), dtype=np.float32)
        mat = sp.csr_matrix((data, (self.user_codes, self.item_codes)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        if binary:
            mat.data[:] = 1.0
        return mat

    def to_array(self) -> np.ndarray:
        """Rows as raw ids: an (n, 2) or (n, 3) object array ``user, item[, timestamp]``."""
        cols = [self.users.decode(self.user_codes), self.items.decode(self.item_codes)]
        if self.timestamps is not None:
            cols.append(self.timestamps)
        out = np.empty((len(self), len(cols)), dtype=object)
        for j, col in enumerate(cols):
            out[:, j] = col
        return out


def _as_1d(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy"):  # pandas Series
        values = values.to_numpy()
    if isinstance(values, np.ndarray):
        return values.reshape(-1) if values.ndim > 1 and values.shape[1:] == (1,) else values
    return np.asarray(list(values), dtype=object)


def _pick(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {str(c).lower(): c for c in columns}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _columns_from_frame(frame: Any) -> tuple[Any, Any, Any]:
    columns = list(frame.columns)
    user_col, item_col = _pick(columns, USER_COLUMNS), _pick(columns, ITEM_COLUMNS)
    time_col = _pick(columns, TIME_COLUMNS)
    if user_col is None or item_col is None:
        if len(columns) not in (2, 3):
            raise DataFormatError(
                f"cannot find the user and item columns among {columns}; name them "
                f"'user_id' and 'item_id' (and 'timestamp'), or pass only those 2-3 columns."
            )
        user_col, item_col = columns[0], columns[1]
        time_col = columns[2] if len(columns) == 3 else None
    ts = frame[time_col].to_numpy() if time_col is not None else None
    return frame[user_col].to_numpy(), frame[item_col].to_numpy(), ts
