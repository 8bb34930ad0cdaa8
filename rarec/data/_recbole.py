"""RecBole atomic files: ``<name>.inter`` and ``<name>.item`` with typed ``name:type`` headers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._errors import DataFormatError
from ._dataset import Dataset
from ._interactions import InteractionLog
from ._io import coerce_ids, field_at, iter_lines
from ._item_text import ItemText, ItemTextTable

_TYPES = {"token", "token_seq", "float", "float_seq"}
TITLE_FIELDS = ("title", "movie_title", "item_name", "name")
CATEGORY_FIELDS = ("categories", "class", "genre", "genres", "category")


def _read_atomic(path: Path, encoding: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Return the field names (types stripped) and the data rows of an atomic file."""
    lines = iter_lines(path, encoding)
    names: list[str] | None = None
    rows = []
    for n, line in lines:
        if not line.strip():
            continue
        fields = line.split("\t")
        if names is None:
            names = []
            for k, col in enumerate(fields):
                name, _, ftype = col.strip().partition(":")
                if ftype not in _TYPES:
                    raise DataFormatError(
                        f"{path}, row {n + 1}, column {k + 1}: header field {col!r} is not 'name:type' "
                        f"with type in {sorted(_TYPES)} (RecBole atomic-file header)."
                    )
                names.append(name)
            continue
        rows.append((n, fields))
    if names is None:
        raise DataFormatError(f"{path} is empty; a RecBole atomic file starts with a 'name:type' header.")
    return names, rows


def _column(names: list[str], wanted: str | tuple[str, ...], path: Path, role: str, required: bool = True) -> int | None:
    for name in (wanted,) if isinstance(wanted, str) else wanted:
        if name in names:
            return names.index(name)
    if required:
        raise DataFormatError(f"{path}: no {role} field {wanted!r}; the header has {names}.")
    return None


def read_recbole(
    path: str | os.PathLike,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str | None = "timestamp",
    title_field: str | tuple[str, ...] = TITLE_FIELDS,
    categories_field: str | tuple[str, ...] = CATEGORY_FIELDS,
    categories_sep: str | None = None,
    encoding: str = "utf-8",
    id_type: str = "auto",
    drop_duplicates: bool = False,
) -> Dataset:
    """Read a RecBole data set from its atomic files.

    Parameters
    ----------
    path : path-like
        A folder holding ``<folder name>.inter`` (and optionally ``.item``),
        or the ``.inter`` file itself (a ``.item`` beside it is read too).
    user_field, item_field, time_field : str
        Field names in the ``.inter`` header; a missing ``timestamp`` field
        means row order is time order.
    title_field, categories_field : str or tuple of str
        Field name(s) tried in the ``.item`` header.
    categories_sep : str or None, default None
        How the categories field splits into categories. ``None`` splits on
        whitespace, RecBole's rule for a ``token_seq`` (MovieLens genres:
        ``"Animation Children's Comedy"``). ``""`` keeps the field whole, as
        one category: for a category path whose names hold spaces, such as
        Amazon's ``"Beauty Hair Care Styling Products Creams, Gels & Lotions"``,
        which a split on whitespace cuts into meaningless words. Any other
        string splits on it.
    encoding, id_type, drop_duplicates
        As in :func:`read_csv`.

    Returns
    -------
    Dataset

    Examples
    --------
    >>> from rarec.data import read_recbole
    >>> data = read_recbole("../shared/data/ml-100k")  # doctest: +SKIP
    >>> data.interactions.n_users  # doctest: +SKIP
    943
    """
    path = Path(path)
    if path.is_dir():
        inter = path / f"{path.name}.inter"
        if not inter.exists():
            found = sorted(p.name for p in path.glob("*.inter"))
            if len(found) != 1:
                raise DataFormatError(f"{path}: expected one '<name>.inter' file; found {found or 'none'}.")
            inter = path / found[0]
    else:
        inter = path
    names, rows = _read_atomic(inter, encoding)
    if not rows:
        raise DataFormatError(f"{inter} holds no interactions (only a header).")
    u = _column(names, user_field, inter, "user")
    i = _column(names, item_field, inter, "item")
    t = None if time_field is None else _column(names, time_field, inter, "timestamp", required=False)
    users = coerce_ids([field_at(f, u, inter, n, "user field") for n, f in rows], id_type)
    items = coerce_ids([field_at(f, i, inter, n, "item field") for n, f in rows], id_type)
    stamps = None if t is None else [field_at(f, t, inter, n, "timestamp field") for n, f in rows]
    log = InteractionLog.from_records(users, items, stamps, drop_duplicates=drop_duplicates, source=str(inter),
        rows=np.array([n for n, _ in rows]),
    )
    item_file = inter.with_suffix(".item")
    text = None
    if item_file.exists():
        text = _read_item_file(item_file, item_field, title_field, categories_field, categories_sep, encoding,
                               log.items.dtype_name)
        text = text.restrict(log.items, report=str(item_file))
    return Dataset(log, text)


def _read_item_file(
    path: Path, item_field: str, title_field, categories_field, categories_sep: str | None, encoding: str, id_type: str
) -> ItemTextTable:
    names, rows = _read_atomic(path, encoding)
    i = _column(names, item_field, path, "item")
    ti = _column(names, title_field, path, "title")
    ci = _column(names, categories_field, path, "categories", required=False)
    ids = coerce_ids([field_at(f, i, path, n, "item field") for n, f in rows], id_type)
    texts = {}
    for raw, (n, fields) in zip(ids.tolist(), rows):
        raw_categories = fields[ci] if ci is not None and ci < len(fields) else ""
        cats = (tuple(raw_categories.split()) if categories_sep is None
                else (raw_categories,) if categories_sep == "" else tuple(raw_categories.split(categories_sep)))
        texts[raw] = ItemText(field_at(fields, ti, path, n, "title field"), cats)
    return ItemTextTable(texts)
