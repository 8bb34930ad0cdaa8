"""Command-line interface: ``rarec --help``."""

from ._app import main

__all__ = ["main"]
