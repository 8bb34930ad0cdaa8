"""One entry point that picks the right loader for a path."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import DataFormatError
from ._amazon import read_amazon
from ._csv import read_csv
from ._dataset import Dataset
from ._movielens import read_movielens
from ._recbole import read_recbole

FORMATS = ("auto", "csv", "tsv", "recbole", "movielens", "amazon")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of ``path`` from its name (and folder contents)."""
    path = Path(path)
    if path.is_dir():
        if (path / "u.data").exists() or (path / "ratings.dat").exists() or (path / "ratings.csv").exists():
            return "movielens"
        if any(path.glob("*.inter")):
            return "recbole"
        raise DataFormatError(f"{path}: cannot tell the format of this folder; pass format=.")
    name = path.name.lower().removesuffix(".gz")
    if path.name in ("u.data", "ratings.dat"):
        return "movielens"
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith((".json", ".jsonl", ".jl")):
        return "amazon"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    if name.endswith((".csv", ".txt")):
        return "csv"
    raise DataFormatError(f"{path}: cannot tell the format from the file name; pass format= one of {FORMATS[1:]}.")


def load_dataset(path: str | os.PathLike, items: str | os.PathLike | None = None, format: str = "auto", **kwargs) -> Dataset:
    """Load interactions (and item texts) with the loader for ``format``.

    Parameters
    ----------
    path : path-like
        Interactions file or release folder.
    items : path-like, optional
        Item text file: the metadata file for Amazon, a delimited file for
        CSV/TSV. RecBole and MovieLens find theirs beside ``path``.
    format : {"auto", "csv", "tsv", "recbole", "movielens", "amazon"}
    **kwargs
        Passed to the loader (:func:`read_csv`, :func:`read_recbole`, ...).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {format!r}.")
    fmt = detect_format(path) if format == "auto" else format
    if fmt in ("csv", "tsv"):
        return read_csv(path, sep="\t" if fmt == "tsv" else kwargs.pop("sep", None), items=items, **kwargs)
    if fmt == "amazon":
        return read_amazon(path, items, **kwargs)
    if items is not None:
        raise ValueError(f"items= is not used by the {fmt} format: its item file is found beside the interactions.")
    return read_recbole(path, **kwargs) if fmt == "recbole" else read_movielens(path, **kwargs)
