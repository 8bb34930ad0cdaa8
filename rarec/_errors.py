"""Exceptions raised by rarec.

Every error about user input says *what* was wrong and *where* (the argument,
file, column or row), so that a user can fix the input without a debugger.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """Input data (an array, a file, a table) does not have the expected form.

    Subclasses :class:`ValueError`, so ``except ValueError`` also catches it.
    """


def where(source: str | None, row: int | None = None, column: str | None = None) -> str:
    """Format a location such as ``"ratings.csv, row 12, column 'timestamp'"``.

    Rows are reported 1-based, as a person counts lines in a file.
    """
    parts = [source] if source else []
    if row is not None:
        parts.append(f"row {row + 1}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts) if parts else "input"


class ModelFormatError(ValueError):
    """A saved model folder is missing, damaged, edited by hand or written by a newer rarec.

    Subclasses :class:`ValueError`.
    """


class LLMMismatchError(ValueError):
    """The LLM at hand is not the one the alignment module was trained with.

    Subclasses :class:`ValueError`.
    """


class SaveInProgressError(RuntimeError):
    """Another process is saving a model into the same folder, and did not finish in time."""
