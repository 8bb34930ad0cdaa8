"""MovieLens raw files: 100K (``u.data``/``u.item``), 1M (``ratings.dat``/``movies.dat``)
and the CSV releases (``ratings.csv``/``movies.csv``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._errors import DataFormatError
from ._csv import read_csv
from ._dataset import Dataset
from ._interactions import InteractionLog
from ._io import coerce_ids, iter_lines
from ._item_text import ItemText, ItemTextTable

#: Genre order of the 19 flags in ML-100K's u.item (as in its u.genre file).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


def _split_rows(path: Path, sep: str, n_fields: int, encoding: str) -> list[tuple[int, list[str]]]:
    rows = []
    for n, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        fields = line.split(sep)
        if len(fields) < n_fields:
            raise DataFormatError(
                f"{path}, row {n + 1}: expected {n_fields} fields separated by {sep!r}; got {len(fields)}."
            )
        rows.append((n, fields))
    if not rows:
        raise DataFormatError(f"{path} is empty.")
    return rows


def read_movielens(path: str | os.PathLike, *, drop_duplicates: bool = False) -> Dataset:
    """Read a MovieLens release from its folder.

    Recognises ML-100K (``u.data`` tab-separated, ``u.item`` ``|``-separated in
    Latin-1 with 19 genre flags), ML-1M/10M (``ratings.dat``, ``movies.dat``
    with ``::`` separators, Latin-1 for 1M) and the CSV releases
    (``ratings.csv``, ``movies.csv``). Every rating counts as a positive
    interaction; ids are integers; titles keep their year, e.g. ``"Toy Story (1995)"``.

    Parameters
    ----------
    path : path-like
        The release folder, or its ratings file.
    drop_duplicates : bool, default False
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if (folder / "u.data").exists() and (path.is_dir() or path.name == "u.data"):
        return _read_100k(folder, drop_duplicates)
    if (folder / "ratings.dat").exists() and (path.is_dir() or path.name == "ratings.dat"):
        return _read_dat(folder, drop_duplicates)
    if (folder / "ratings.csv").exists() and (path.is_dir() or path.name == "ratings.csv"):
        movies = folder / "movies.csv"
        return read_csv(
            folder / "ratings.csv", user_col="userId", item_col="movieId", time_col="timestamp",
            id_type="int", drop_duplicates=drop_duplicates,
            items=movies if movies.exists() else None, item_id_col="movieId", title_col="title",
            categories_col="genres", categories_sep="|",
        )
    raise DataFormatError(
        f"{path}: not a MovieLens release; expected u.data (100K), ratings.dat (1M/10M) or ratings.csv."
    )


def _ratings_log(path: Path, sep: str, drop_duplicates: bool) -> InteractionLog:
    """``user sep item sep rating sep timestamp`` lines (100K's u.data, 1M's ratings.dat)."""
    rows = _split_rows(path, sep, 4, "latin-1")
    return InteractionLog.from_records(
        coerce_ids([f[0].strip() for _, f in rows], "int"),
        coerce_ids([f[1].strip() for _, f in rows], "int"),
        [f[3].strip() for _, f in rows],
        drop_duplicates=drop_duplicates, source=str(path), rows=np.array([n for n, _ in rows]),
    )


def _read_100k(folder: Path, drop_duplicates: bool) -> Dataset:
    log = _ratings_log(folder / "u.data", "\t", drop_duplicates)
    item_file = folder / "u.item"
    text = None
    if item_file.exists():
        genres = ML100K_GENRES
        genre_file = folder / "u.genre"
        if genre_file.exists():
            named = [line.split("|")[0] for _, line in iter_lines(genre_file, "latin-1") if line.strip()]
            genres = tuple(named) if len(named) == len(ML100K_GENRES) else genres
        texts = {}
        for n, fields in _split_rows(item_file, "|", 5 + len(genres), "latin-1"):
            flags = fields[5:5 + len(genres)]
            cats = tuple(g for g, flag in zip(genres, flags) if flag.strip() == "1" and g != "unknown")
            try:
                texts[int(fields[0])] = ItemText(fields[1], cats)
            except ValueError:
                raise DataFormatError(f"{item_file}, row {n + 1}: item id {fields[0]!r} is not an integer.") from None
        text = ItemTextTable(texts).restrict(log.items, report=str(item_file))
    return Dataset(log, text)


def _read_dat(folder: Path, drop_duplicates: bool) -> Dataset:
    log = _ratings_log(folder / "ratings.dat", "::", drop_duplicates)
    movies = folder / "movies.dat"
    text = None
    if movies.exists():
        texts = {}
        for n, fields in _split_rows(movies, "::", 3, "latin-1"):
            try:
                texts[int(fields[0])] = ItemText(fields[1], tuple(fields[2].split("|")))
            except ValueError:
                raise DataFormatError(f"{movies}, row {n + 1}: item id {fields[0]!r} is not an integer.") from None
        text = ItemTextTable(texts).restrict(log.items, report=str(movies))
    return Dataset(log, text)
