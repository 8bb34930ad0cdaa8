"""JSON for the files rarec writes (model configs, checkpoint states): NumPy scalars become Python numbers."""

from __future__ import annotations

import os
from typing import Any


def json_default(value: Any) -> Any:
    """``json.dump(..., default=json_default)``: NumPy integers and floats as Python numbers, paths as strings."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, os.PathLike):  # e.g. checkpoint_dir given as a pathlib.Path
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
