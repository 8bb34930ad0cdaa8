"""Reading text files line by line, plain or gzip, with errors that say where."""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .._errors import DataFormatError

#: Files at least this large show a progress bar (in bytes read) while they are read, on a terminal.
PROGRESS_MIN_BYTES = 32 * 2**20

#: An integer literal, also as an integral float ("12.0": spreadsheets and pandas write ids so).
_INT_RE = re.compile(r"^[+-]?\d+(\.0*)?$")


def iter_lines(path: str | os.PathLike, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_index, line)`` pairs without line endings.

    ``.gz`` files are decompressed on the fly. A truncated or corrupt gzip
    stream, or bytes that are not valid in ``encoding``, raise
    :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise DataFormatError(f"{path} is a directory; expected a file.")
    opener = gzip.open if path.suffix == ".gz" else open
    size = path.stat().st_size
    n = -1
    try:
        with opener(path, "rb") as handle, tqdm(total=size, unit="B", unit_scale=True, desc=f"reading {path.name}",
                                               leave=False, disable=True if size < PROGRESS_MIN_BYTES else None) as bar:
            raw_file = getattr(handle, "fileobj", handle)  # gzip: progress in compressed bytes, as the size is
            for n, raw in enumerate(handle):
                if n % 65536 == 65535:
                    bar.update(raw_file.tell() - bar.n)
                try:
                    line = raw.decode(encoding)
                    if n == 0:  # a UTF-8 byte-order mark (Excel writes one) is not part of the first field
                        line = line.removeprefix("\ufeff")
                except UnicodeDecodeError as exc:
                    raise DataFormatError(
                        f"{path}, row {n + 1}: bytes that are not valid {encoding} text ({exc.reason} at "
                        f"byte {exc.start}); pass the file's encoding (for example encoding='latin-1')."
                    ) from None
                yield n, line.rstrip("\r\n")
    except (EOFError, zlib.error) as exc:
        raise DataFormatError(
            f"{path}: the gzip stream is truncated or corrupt after row {n + 1} ({exc}); "
            "download or copy the file again."
        ) from None
    except gzip.BadGzipFile as exc:
        raise DataFormatError(f"{path}: not a gzip file ({exc}); rename it without '.gz' if it is plain text.") from None


def coerce_ids(values: list[str], id_type: str) -> np.ndarray:
    """Turn id strings read from a file into ``int64`` or ``object`` (str) arrays.

    ``id_type="auto"`` gives integers when every id is an integer literal,
    written plainly or as an integral float (``12`` and ``12.0`` are one id).
    """
    if id_type not in ("auto", "int", "str"):
        raise ValueError(f"id_type must be 'auto', 'int' or 'str'; got {id_type!r}.")
    if id_type == "str" or (id_type == "auto" and not all(_INT_RE.match(v) for v in values)):
        return np.asarray(values, dtype=object)
    try:
        return np.asarray([int(v.split(".")[0]) for v in values] if any("." in v for v in values)
                          else [int(v) for v in values], dtype=np.int64)
    except ValueError as exc:
        raise DataFormatError(f"id_type='int' but an id is not an integer: {exc}.") from None


def field_at(fields: list[str], index: int, path: str | os.PathLike, row: int, name: str) -> str:
    """``fields[index]`` stripped, or a :class:`DataFormatError` saying the row is too short."""
    if index >= len(fields):
        raise DataFormatError(
            f"{path}, row {row + 1}: has {len(fields)} field(s), but the {name} is column {index + 1}."
        )
    return fields[index].strip()
