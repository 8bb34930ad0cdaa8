"""Delimited text files (CSV, TSV) with configurable columns."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from .._errors import DataFormatError
from ._dataset import Dataset
from ._interactions import InteractionLog
from ._io import coerce_ids, field_at, iter_lines
from ._item_text import ItemText, ItemTextTable

Column = str | int


def _sniff_sep(path: Path, sep: str | None) -> str:
    if sep is not None:
        return sep
    suffixes = [s.lower() for s in path.suffixes]
    return "\t" if any(s in (".tsv", ".tab", ".inter", ".item") for s in suffixes) else ","


def _read_table(path: Path, sep: str, header: bool, encoding: str) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    lines = iter_lines(path, encoding)
    names = None
    rows = []
    reader = csv.reader((line for _, line in lines), delimiter=sep)
    for n, fields in enumerate(reader):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if header and names is None:
            names = [f.strip() for f in fields]
            continue
        rows.append((n, fields))
    return names, rows


def _resolve(col: Column | None, names: list[str] | None, path: Path, role: str) -> int | None:
    if col is None:
        return None
    if isinstance(col, int):
        return col
    if names is None:
        raise DataFormatError(f"{path}: column {col!r} ({role}) given by name, but header=False; give its position.")
    if col in names:
        return names.index(col)
    raise DataFormatError(f"{path}: no column {col!r} for the {role}; the header has {names}.")


def read_csv(
    path: str | os.PathLike,
    *,
    user_col: Column = "user_id",
    item_col: Column = "item_id",
    time_col: Column | None = "timestamp",
    sep: str | None = None,
    header: bool = True,
    encoding: str = "utf-8",
    id_type: str = "auto",
    drop_duplicates: bool = False,
    items: str | os.PathLike | None = None,
    item_id_col: Column = "item_id",
    title_col: Column = "title",
    categories_col: Column | None = None,
    categories_sep: str = "|",
) -> Dataset:
    """Read interactions (and optionally item texts) from CSV/TSV files.

    Parameters
    ----------
    path : path-like
        The interactions file; ``.gz`` is decompressed.
    user_col, item_col, time_col : str or int
        Column names (with ``header=True``) or 0-based positions.
        ``time_col=None`` means no timestamps: row order is time order. With the
        default ``"timestamp"``, a file without that column is read without
        timestamps.
    sep : str, optional
        Field separator; by default ``"\\t"`` for ``.tsv``/``.tab`` files and ``","`` otherwise.
    header : bool, default True
        Whether the first non-empty line names the columns.
    encoding : str, default "utf-8"
    id_type : {"auto", "int", "str"}
        ``"auto"`` reads ids as ints when all of them are integer literals.
    drop_duplicates : bool, default False
        See :meth:`InteractionLog.from_records`.
    items : path-like, optional
        A second delimited file with item texts (same ``sep``, ``header`` and
        ``encoding``); ``item_id_col``, ``title_col`` and ``categories_col`` name
        its columns; categories are split on ``categories_sep``.

    Returns
    -------
    Dataset
    """
    path = Path(path)
    separator = _sniff_sep(path, sep)
    names, rows = _read_table(path, separator, header, encoding)
    if not rows:
        raise DataFormatError(f"{path} holds no interactions (the file is empty or has only a header).")
    u = _resolve(user_col, names, path, "user id")
    i = _resolve(item_col, names, path, "item id")
    t = None
    if time_col is not None:
        if time_col == "timestamp" and names is not None and "timestamp" not in names:
            t = None  # the default name is optional
        else:
            t = _resolve(time_col, names, path, "timestamp")
    users = [field_at(f, u, path, n, "user id") for n, f in rows]
    item_ids = [field_at(f, i, path, n, "item id") for n, f in rows]
    for label, values in (("user id", users), ("item id", item_ids)):
        empty = next((k for k, v in enumerate(values) if not v), None)
        if empty is not None:
            raise DataFormatError(f"{path}, row {rows[empty][0] + 1}: empty {label}.")
    stamps = None if t is None else [field_at(f, t, path, n, "timestamp") for n, f in rows]
    log = InteractionLog.from_records(
        coerce_ids(users, id_type), coerce_ids(item_ids, id_type), stamps,
        drop_duplicates=drop_duplicates, source=str(path), rows=np.array([n for n, _ in rows]),
    )
    text = None
    if items is not None:
        text = read_item_text_csv(
            items, item_col=item_id_col, title_col=title_col, categories_col=categories_col,
            categories_sep=categories_sep, sep=sep, header=header, encoding=encoding, id_type=log.items.dtype_name,
        )
        text = text.restrict(log.items, report=str(items))
    return Dataset(log, text)


def read_item_text_csv(
    path: str | os.PathLike,
    *,
    item_col: Column = "item_id",
    title_col: Column = "title",
    categories_col: Column | None = None,
    categories_sep: str = "|",
    sep: str | None = None,
    header: bool = True,
    encoding: str = "utf-8",
    id_type: str = "auto",
) -> ItemTextTable:
    """Read item texts (id, title, optional categories) from a delimited file."""
    path = Path(path)
    names, rows = _read_table(path, _sniff_sep(path, sep), header, encoding)
    i = _resolve(item_col, names, path, "item id")
    ti = _resolve(title_col, names, path, "title")
    ci = _resolve(categories_col, names, path, "categories")
    ids = coerce_ids([field_at(f, i, path, n, "item id") for n, f in rows], id_type)
    texts, repeated = {}, []
    for raw, (n, fields) in zip(ids.tolist(), rows):
        if raw in texts:  # the first row of an id is kept
            repeated.append((raw, n))
            continue
        cats = () if ci is None or ci >= len(fields) else tuple(c for c in fields[ci].split(categories_sep))
        texts[raw] = ItemText(field_at(fields, ti, path, n, "title"), cats)
    if repeated:
        raw, n = repeated[0]
        warnings.warn(f"{path}: {len(repeated)} row(s) repeat an item id already given a text (first: {raw!r} "
                      f"again at row {n + 1}); the first text of each item is kept.", UserWarning, stacklevel=2)
    return ItemTextTable(texts)

