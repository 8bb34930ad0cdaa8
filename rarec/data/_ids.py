"""Encoding of raw user/item ids to contiguous integer indices and back."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._errors import DataFormatError, where


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating) and math.isnan(value):
        return True
    # pandas.NA / NaT compare oddly; detect them without importing pandas.
    return type(value).__name__ in {"NAType", "NaTType"}


#: A number written as text: an integer literal, or an integral float ("12.0").
_NUMBER_RE = re.compile(r"^\s*[+-]?\d+(\.0*)?\s*$")
#: Never equal to an id: what a boolean is looked up as.
_NOT_AN_ID = object()


def normalize_ids(
    values: Iterable[Any], name: str, source: str | None = None, rows: np.ndarray | None = None
) -> np.ndarray:
    """Return raw ids as an ``int64`` array or an ``object`` array of ``str``.

    Integers (Python, NumPy, or floats with an integral value such as the
    ``1.0`` that pandas produces for a column with missing values) become
    ``int64``; strings stay strings. Anything else, a missing value, or a mix
    of integers and strings raises :class:`DataFormatError` naming the row
    (``rows[i]`` when given: the file row of value ``i``).
    """
    row = (lambda i: i) if rows is None else (lambda i: int(rows[i]))  # noqa: E731
    arr = values if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
    if arr.ndim != 1:
        raise DataFormatError(f"{name} must be one-dimensional; got shape {arr.shape}.")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise DataFormatError(f"{name} must be integers or strings; got booleans.")
    if arr.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise DataFormatError(
                f"{where(source, row(int(bad[0])), name)}: missing id (NaN); "
                f"{bad.size} row(s) have no {name}."
            )
        frac = np.flatnonzero(arr != np.round(arr))
        if frac.size:
            raise DataFormatError(
                f"{where(source, row(int(frac[0])), name)}: id {arr[frac[0]]!r} is not an integer."
            )
        return arr.astype(np.int64)
    if arr.dtype.kind == "U":
        return arr.astype(object)
    # object arrays: inspect element types once
    first_int = first_str = None
    out_int = np.empty(arr.shape[0], dtype=np.int64)
    for i, value in enumerate(arr):
        if _is_missing(value):
            raise DataFormatError(f"{where(source, row(i), name)}: missing id ({value!r}).")
        if isinstance(value, str):
            if first_str is None:
                first_str = i
        elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
            if first_int is None:
                first_int = i
            out_int[i] = int(value)
        elif isinstance(value, numbers.Real) and float(value).is_integer():
            if first_int is None:
                first_int = i
            out_int[i] = int(value)
        else:
            raise DataFormatError(
                f"{where(source, row(i), name)}: ids must be integers or strings; "
                f"got {type(value).__name__} {value!r}."
            )
        if first_int is not None and first_str is not None:
            raise DataFormatError(
                f"{name} mix integers (first at {where(source, row(first_int))}) and strings "
                f"(first at {where(source, row(first_str))}); convert them to one type "
                f"(for example all to str) before passing them in."
            )
    if first_str is not None:
        _refuse_numbers_written_two_ways(arr, name, source)
        return arr
    return out_int


def _refuse_numbers_written_two_ways(ids: np.ndarray, name: str, source: str | None) -> None:
    """String ids such as ``"12"`` and ``"12.0"`` name one number: two users or items would be worse than an error.

    Only a sign, surrounding blanks or a ``.0`` suffix count as another way of
    writing a number; ``"007"`` and ``"7"`` stay two ids (codes keep their zeros).
    """
    seen: dict[str, str] = {}
    for value in dict.fromkeys(ids.tolist()):  # unique, in order of appearance
        if _NUMBER_RE.match(value):
            number = value.strip().lstrip("+").split(".")[0]
            if seen.setdefault(number, value) != value:
                raise DataFormatError(
                    f"{where(source, None, name) if source else name}: {seen[number]!r} and {value!r} are one number "
                    "written two ways, which would make them two different ids; write the ids one way (for example "
                    "convert them to int) before passing them in."
                )


class IdIndex:
    """A bijection between raw ids (int or str) and indices ``0..n-1``.

    Parameters
    ----------
    ids : array-like
        Unique raw ids; the position of an id is its index.
    kind : str
        What the ids name (``"user"`` or ``"item"``), used in error messages.

    Examples
    --------
    >>> from rarec.data import IdIndex
    >>> index, codes = IdIndex.from_values(["b", "a", "b"], kind="user")
    >>> codes.tolist(), index.decode([0, 1]).tolist()
    ([1, 0, 1], ['a', 'b'])
    """

    def __init__(self, ids: Iterable[Any], kind: str = "item") -> None:
        self.kind = kind
        label = f"{kind} ids"
        self._ids = normalize_ids(ids if isinstance(ids, np.ndarray) else list(ids), label)
        self._lookup = {v: i for i, v in enumerate(self._ids.tolist())}
        if len(self._lookup) != len(self._ids):
            raise DataFormatError(f"{label} given to IdIndex are not unique.")

    @classmethod
    def from_values(
        cls, values: Iterable[Any], kind: str = "item", source: str | None = None
    ) -> tuple[IdIndex, np.ndarray]:
        """Build the index of the sorted unique ``values`` and encode them.

        Sorting makes the encoding independent of row order.
        Returns ``(index, codes)`` with ``codes`` an ``int64`` array.
        """
        raw = normalize_ids(values, f"{kind} ids", source)
        uniques, codes = np.unique(raw, return_inverse=True)
        return cls(uniques, kind=kind), codes.astype(np.int64).reshape(-1)

    @property
    def ids(self) -> np.ndarray:
        """The raw ids in index order (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def dtype_name(self) -> str:
        """``"int"`` or ``"str"``: the type of the raw ids."""
        return "int" if self._ids.dtype.kind == "i" else "str"

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: Any) -> bool:
        return self._key(raw_id) in self._lookup

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, IdIndex)
            and len(self) == len(other)
            and self._ids.dtype.kind == other._ids.dtype.kind
            and bool(np.all(self._ids == other._ids))
        )

    __hash__ = None  # mutable-looking container: not hashable

    def __repr__(self) -> str:
        return f"IdIndex(kind={self.kind!r}, n={len(self)}, type={self.dtype_name})"

    def _key(self, raw_id: Any) -> Any:
        if isinstance(raw_id, bool | np.bool_):
            return _NOT_AN_ID  # True would otherwise find the id 1
        if isinstance(raw_id, numbers.Integral):
            return int(raw_id)
        return raw_id

    def encode(self, raw_ids: Iterable[Any], unknown: str = "raise") -> np.ndarray:
        """Map raw ids to indices.

        Parameters
        ----------
        raw_ids : iterable
            Raw ids to encode.
        unknown : {"raise", "mask"}
            ``"raise"`` raises :class:`KeyError` naming the first unknown id;
            ``"mask"`` returns ``-1`` for unknown ids.
        """
        if unknown not in ("raise", "mask"):
            raise ValueError(f"unknown must be 'raise' or 'mask'; got {unknown!r}.")
        values = raw_ids.tolist() if isinstance(raw_ids, np.ndarray) else list(raw_ids)
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            code = self._lookup.get(self._key(v), -1)
            if code < 0 and unknown == "raise":
                raise KeyError(
                    f"unknown {self.kind} id {v!r} (not in the data this index was built from)"
                )
            out[i] = code
        return out

    def decode(self, indices: Iterable[int]) -> np.ndarray:
        """Map indices back to raw ids (raises :class:`IndexError` when out of range)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            bad = idx[(idx < 0) | (idx >= len(self))][0]
            raise IndexError(f"index {int(bad)} is out of range for {len(self)} {self.kind}s.")
        return self._ids[idx]

    def subset(self, keep: np.ndarray) -> IdIndex:
        """The index of the ids whose boolean ``keep`` flag is set, order preserved."""
        return IdIndex(self._ids[np.asarray(keep, dtype=bool)], kind=self.kind)

    def to_list(self) -> list:
        """Raw ids as a JSON-serialisable list."""
        return self._ids.tolist()
