"""A loaded data set: the interaction log and the item texts, filtered together."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from .._errors import DataFormatError
from .._validation import check_int
from ._interactions import InteractionLog
from ._item_text import ItemTextTable

logger = logging.getLogger(__name__)


class Dataset(NamedTuple):
    """What a loader returns; unpacks as ``interactions, item_text = dataset``.

    Attributes
    ----------
    interactions : InteractionLog
    item_text : ItemTextTable or None
        Holds only items that are in ``interactions``.
    """

    interactions: InteractionLog
    item_text: ItemTextTable | None = None

    def k_core(self, k: int = 5, *, user_k: int | None = None, item_k: int | None = None) -> Dataset:
        """Apply :func:`k_core_filter` and keep the texts of the remaining items."""
        log = k_core_filter(self.interactions, k, user_k=user_k, item_k=item_k)
        text = None if self.item_text is None else self.item_text.restrict(log.items)
        return Dataset(log, text)

    def __repr__(self) -> str:
        n_text = 0 if self.item_text is None else len(self.item_text)
        return f"Dataset({self.interactions!r}, items_with_text={n_text})"


def k_core_filter(
    log: InteractionLog, k: int = 5, *, user_k: int | None = None, item_k: int | None = None
) -> InteractionLog:
    """Remove users and items with fewer than ``k`` interactions, to a fixed point.

    Removing an item can push a user below the threshold and vice versa, so
    the filter repeats until nothing changes (as RecBole does). Every
    interaction counts, repeats included. The result is re-indexed: its id
    maps hold only the surviving users and items.

    Parameters
    ----------
    log : InteractionLog
    k : int, default 5
        Threshold for both users and items.
    user_k, item_k : int, optional
        Separate thresholds; default to ``k``.

    Examples
    --------
    >>> from rarec.data import InteractionLog, k_core_filter
    >>> log = InteractionLog.from_any([(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)])
    >>> k_core_filter(log, 2).n_users
    2
    """
    user_k = k if user_k is None else user_k
    item_k = k if item_k is None else item_k
    for name, value in (("k", k), ("user_k", user_k), ("item_k", item_k)):
        check_int(value, name, "k_core_filter", 1)
    keep = np.ones(len(log), dtype=bool)
    while True:
        u_counts = np.bincount(log.user_codes[keep], minlength=log.n_users)
        i_counts = np.bincount(log.item_codes[keep], minlength=log.n_items)
        new_keep = keep & (u_counts[log.user_codes] >= user_k) & (i_counts[log.item_codes] >= item_k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise DataFormatError(
            f"the {user_k}/{item_k}-core filter removed every interaction; lower the thresholds."
        )
    filtered = log.subset(keep).reindexed()
    logger.info(
        "k-core filter (users >= %d, items >= %d): kept %d users, %d items, %d of %d interactions",
        user_k, item_k, filtered.n_users, filtered.n_items, len(filtered), len(log),
    )
    return filtered
