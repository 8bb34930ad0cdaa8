"""Parameter checks with scikit-learn's message style:
"The 'k' parameter of RARecommender must be an int in [1, inf). Got 0 instead."
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any


def check_int(value: Any, name: str, owner: str, low: int = 0, high: int | None = None) -> int:
    """Return ``value`` as an int in ``[low, high]`` or raise ``ValueError``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and value >= low and (high is None or value <= high)
    if not ok:
        span = f"[{low}, inf)" if high is None else f"[{low}, {high}]"
        raise ValueError(f"The '{name}' parameter of {owner} must be an int in {span}. Got {value!r} instead.")
    return int(value)


def check_float(value: Any, name: str, owner: str, low: float = 0.0, high: float | None = None,
                low_open: bool = False) -> float:
    """Return ``value`` as a float in the interval or raise ``ValueError``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else str(high) + ']'}"
        raise ValueError(f"The '{name}' parameter of {owner} must be a float in {span}. Got {value!r} instead.")
    return float(value)


def check_option(value: Any, name: str, owner: str, options: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``options`` or raise ``ValueError``."""
    options = tuple(options)
    if value not in options:
        raise ValueError(f"The '{name}' parameter of {owner} must be one of {options}. Got {value!r} instead.")
    return value
