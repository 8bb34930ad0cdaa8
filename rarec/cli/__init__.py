"""Command-line interface: ``rarec --help``."""

from . import _commands, _demo  # noqa: F401  (register the commands)
from ._app import main

__all__ = ["main"]
