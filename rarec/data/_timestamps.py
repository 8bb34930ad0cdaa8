"""Reading timestamps given as numbers, numeric strings, ISO dates or datetimes."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._errors import DataFormatError, where


def _one_timestamp(value: Any) -> float:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    if isinstance(value, np.datetime64):
        return float(value.astype("datetime64[us]").astype(np.int64)) / 1e6
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp without importing pandas
        return _one_timestamp(value.to_pydatetime())
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            return _one_timestamp(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise ValueError(f"{value!r} is neither a number nor an ISO 8601 date") from None
    return float(value)


def parse_timestamps(
    values: Iterable[Any], source: str | None = None, column: str = "timestamp", rows: np.ndarray | None = None
) -> np.ndarray:
    """Convert timestamps to ``float64`` seconds.

    Accepts numbers, numeric strings, ISO 8601 date strings (naive dates are
    read as UTC), ``datetime``/``date`` objects and ``numpy.datetime64``.
    A value that cannot be read, or a missing value, raises
    :class:`DataFormatError` that names the row (``rows[i]`` when given: the
    file row of value ``i``).
    """
    row = (lambda i: i) if rows is None else (lambda i: int(rows[i]))  # noqa: E731
    arr = values if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
    if arr.dtype.kind == "M":
        if np.isnat(arr).any():
            i = int(np.flatnonzero(np.isnat(arr))[0])
            raise DataFormatError(f"{where(source, row(i), column)}: missing timestamp (NaT).")
        return arr.astype("datetime64[us]").astype(np.int64).astype(np.float64) / 1e6
    if arr.dtype.kind in "iuf":
        out = arr.astype(np.float64)
    else:
        out = np.empty(arr.shape[0], dtype=np.float64)
        for i, value in enumerate(arr):
            try:
                out[i] = _one_timestamp(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise DataFormatError(f"{where(source, row(i), column)}: cannot read timestamp: {exc}.") from None
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise DataFormatError(
            f"{where(source, row(int(bad[0])), column)}: missing or infinite timestamp; "
            f"{bad.size} row(s) affected. Give every row a timestamp, or none at all "
            f"(then row order is the sequence order)."
        )
    return out
