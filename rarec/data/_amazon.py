"""Amazon review data: JSON lines (plain or ``.gz``) plus the metadata file.

Field names of the 2014 (McAuley et al.), 2018 (Ni et al.) and 2023 (Hou et
al.) releases are all understood.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataFormatError
from ._dataset import Dataset
from ._interactions import InteractionLog
from ._io import iter_lines
from ._item_text import ItemText, ItemTextTable

USER_KEYS = ("reviewerID", "user_id")
ITEM_KEYS = ("asin", "parent_asin")  # the 2023 release ranks by parent_asin when given
TIME_KEYS = ("unixReviewTime", "timestamp", "reviewTime")


def _parse_record(line: str, path: Path, n: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        # The 2014 metadata files are Python dict literals, not JSON. literal_eval
        # only builds literals: it never runs code.
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataFormatError(f"{path}, row {n + 1}: neither JSON nor a Python dict literal: {line[:80]!r}.") from None
    if not isinstance(record, dict):
        raise DataFormatError(f"{path}, row {n + 1}: expected one JSON object per line; got {type(record).__name__}.")
    return record


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if record.get(key) not in (None, ""):
            return key, record[key]
    return None, None


def _timestamp(key: str | None, value: Any, path: Path, n: int) -> float:
    if key == "reviewTime":  # "09 13, 2009" in the 2014/2018 releases
        try:
            return _dt.datetime.strptime(str(value).strip(), "%m %d, %Y").replace(tzinfo=_dt.timezone.utc).timestamp()
        except ValueError:
            raise DataFormatError(f"{path}, row {n + 1}: reviewTime {value!r} is not 'MM DD, YYYY'.") from None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(f"{path}, row {n + 1}, field {key!r}: timestamp {value!r} is not a number.") from None
    return seconds / 1000.0 if key == "timestamp" else seconds  # the 2023 release uses milliseconds


def read_amazon(
    reviews: str | os.PathLike,
    meta: str | os.PathLike | None = None,
    *,
    drop_duplicates: bool = False,
) -> Dataset:
    """Read Amazon reviews as interactions and the metadata file as item texts.

    Parameters
    ----------
    reviews : path-like
        JSON lines, one review per line, plain or gzip. User, item and time
        come from ``reviewerID``/``asin``/``unixReviewTime`` (2014, 2018;
        ``reviewTime`` as a fallback) or ``user_id``/``parent_asin``/``timestamp``
        in milliseconds (2023).
    meta : path-like, optional
        Metadata lines with ``asin`` (or ``parent_asin``), ``title`` and
        categories (``categories`` as a list of lists in 2014, ``category`` in
        2018, ``categories`` in 2023). The 2014 files are Python literals and
        are read with :func:`ast.literal_eval`, which never executes code.
        Only items that have reviews are kept (the count of the rest is warned).
    drop_duplicates : bool, default False

    Returns
    -------
    Dataset
    """
    reviews = Path(reviews)
    users, items, stamps, line_numbers = [], [], [], []
    for n, line in iter_lines(reviews):
        if not line.strip():
            continue
        record = _parse_record(line, reviews, n)
        ukey, user = _first(record, USER_KEYS)
        ikey, item = _first(record, ITEM_KEYS[::-1] if "parent_asin" in record else ITEM_KEYS)
        tkey, stamp = _first(record, TIME_KEYS)
        for key, wanted in ((ukey, USER_KEYS), (ikey, ITEM_KEYS), (tkey, TIME_KEYS)):
            if key is None:
                raise DataFormatError(f"{reviews}, row {n + 1}: no field among {list(wanted)}; keys are {sorted(record)}.")
        users.append(str(user))
        items.append(str(item))
        stamps.append(_timestamp(tkey, stamp, reviews, n))
        line_numbers.append(n)
    if not users:
        raise DataFormatError(f"{reviews} holds no reviews.")
    log = InteractionLog.from_records(
        users, items, stamps, drop_duplicates=drop_duplicates, source=str(reviews), rows=np.array(line_numbers)
    )
    text = None if meta is None else read_amazon_meta(meta, keep=log)
    return Dataset(log, text)


def read_amazon_meta(meta: str | os.PathLike, keep: InteractionLog | None = None) -> ItemTextTable:
    """Read an Amazon metadata file into item texts (see :func:`read_amazon`)."""
    meta = Path(meta)
    texts: dict[str, ItemText] = {}
    n_skipped = 0
    for n, line in iter_lines(meta):
        if not line.strip():
            continue
        record = _parse_record(line, meta, n)
        key, item = _first(record, ("parent_asin", "asin"))
        if key is None:
            raise DataFormatError(f"{meta}, row {n + 1}: no 'asin' or 'parent_asin' field.")
        if keep is not None and str(item) not in keep.items:
            n_skipped += 1
            continue
        title = record.get("title") or ""
        texts[str(item)] = ItemText(title, _categories(record))
    table = ItemTextTable(texts)
    if n_skipped:
        warnings.warn(f"{meta}: skipped {n_skipped} metadata record(s) of items without reviews.", stacklevel=2)
    return table


def _categories(record: dict[str, Any]) -> tuple[str, ...]:
    raw = record.get("categories") or record.get("category") or ()
    flat: list[str] = []
    for entry in raw:
        for cat in entry if isinstance(entry, list | tuple) else (entry,):
            cat = str(cat).strip()
            if cat and cat not in flat:
                flat.append(cat)
    return tuple(flat)
