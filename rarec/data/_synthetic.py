"""A synthetic catalogue with planted structure, for tests and the demo."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from .._validation import check_float, check_int

from ._dataset import Dataset
from ._interactions import InteractionLog
from ._item_text import ItemText, ItemTextTable

# Each category has its own words; every title uses one of them, so a text
# model can tell categories apart from titles alone.
_CATEGORY_WORDS = {
    "space": ("Galaxy", "Orbit", "Nebula", "Comet", "Rocket", "Starship"),
    "jazz": ("Saxophone", "Swing", "Bebop", "Trumpet", "Blues", "Groove"),
    "cooking": ("Kitchen", "Recipe", "Spice", "Bakery", "Skillet", "Feast"),
    "mystery": ("Detective", "Clue", "Alibi", "Suspect", "Cipher", "Secret"),
    "garden": ("Orchid", "Meadow", "Blossom", "Hedge", "Tulip", "Greenhouse"),
    "ocean": ("Harbor", "Reef", "Tide", "Sailor", "Lighthouse", "Coral"),
    "mountain": ("Summit", "Glacier", "Ridge", "Avalanche", "Canyon", "Alpine"),
    "robots": ("Android", "Circuit", "Cyborg", "Servo", "Automaton", "Gear"),
    "history": ("Empire", "Dynasty", "Castle", "Pharaoh", "Crusade", "Chronicle"),
    "sports": ("Stadium", "Champion", "Marathon", "Goal", "Referee", "Trophy"),
}
_ADJECTIVES = ("Silent", "Golden", "Hidden", "Broken", "Last", "Wild", "Crimson", "Frozen", "Electric", "Distant")
_NOUNS = ("Story", "Journey", "Night", "Legacy", "Dream", "Season", "Promise", "Echo")


def make_interactions(
    n_users: int = 300,
    n_items: int = 120,
    n_categories: int = 6,
    *,
    min_length: int = 8,
    max_length: int = 25,
    n_favorite_categories: int = 2,
    p_sequential: float = 0.6,
    p_noise: float = 0.1,
    random_state: int | np.random.RandomState | None = None,
) -> Dataset:
    """Generate an interaction log and item texts with planted structure.

    Items belong to categories whose words appear in their titles. Within a
    category, items form a cycle (a fixed "next item"). Every user prefers a
    few categories; each step of a user's sequence follows the cycle from the
    previous item with probability ``p_sequential``, else picks a popular item
    of a favourite category, or (with probability ``p_noise``) any item by
    global popularity. A user never repeats an item. So a model that uses
    the previous item, or the user's categories, beats popularity by far.

    Parameters
    ----------
    n_users, n_items : int
        Size of the log; raw ids are ``0..n_users-1`` and ``0..n_items-1``.
    n_categories : int
        At most 10 named categories (space, jazz, cooking, ...).
    min_length, max_length : int
        Range of sequence lengths (inclusive); each category must have more
        items than ``max_length`` allows a user to take from it.
    n_favorite_categories : int
        Categories each user draws from.
    p_sequential, p_noise : float
        Probabilities of the two kinds of steps described above.
    random_state : int, RandomState or None
        Seed; the same seed gives the same data.

    Returns
    -------
    Dataset
        ``interactions`` with timestamps (seconds) and ``item_text`` with a
        title and one category for every item.

    Examples
    --------
    >>> from rarec.data import make_interactions
    >>> log, text = make_interactions(n_users=50, n_items=60, random_state=0)
    >>> log.n_users, log.n_items
    (50, 60)
    """
    owner = "make_interactions"
    check_int(n_users, "n_users", owner, 1)
    check_int(n_items, "n_items", owner, 2)
    check_int(n_categories, "n_categories", owner, 1, len(_CATEGORY_WORDS))
    check_int(min_length, "min_length", owner, 1)
    check_int(max_length, "max_length", owner, min_length)
    check_int(n_favorite_categories, "n_favorite_categories", owner, 1, n_categories)
    if n_items < n_categories * 2:
        raise ValueError(f"n_items ({n_items}) must be at least 2 * n_categories ({2 * n_categories}).")
    if max_length > n_items:
        raise ValueError(f"max_length ({max_length}) cannot exceed n_items ({n_items}): users never repeat items.")
    check_float(p_sequential, "p_sequential", owner, 0.0, 1.0)
    check_float(p_noise, "p_noise", owner, 0.0, 1.0)
    rng = check_random_state(random_state)

    names = list(_CATEGORY_WORDS)[:n_categories]
    category = rng.permutation(np.arange(n_items) % n_categories)  # (n_items,)
    members = [np.flatnonzero(category == c) for c in range(n_categories)]
    next_item = np.empty(n_items, dtype=np.int64)
    popularity = np.empty(n_items)
    for items in members:
        order = rng.permutation(items)
        next_item[order] = np.roll(order, -1)
        popularity[order] = 1.0 / np.arange(1, len(order) + 1) ** 0.8  # Zipf inside a category

    users, items_out, stamps = [], [], []
    for u in range(n_users):
        favorites = rng.choice(n_categories, size=n_favorite_categories, replace=False)
        weights = rng.dirichlet(np.ones(n_favorite_categories) * 2.0)
        length = int(rng.randint(min_length, max_length + 1))
        seen: set[int] = set()
        prev = -1
        t = float(rng.randint(1_577_836_800, 1_609_459_200))  # some time in 2020
        for _ in range(length):
            r = rng.rand()
            if prev >= 0 and r < p_sequential:
                candidate = next_item[prev]
            elif r >= 1.0 - p_noise:
                candidate = int(rng.choice(n_items, p=popularity / popularity.sum()))
            else:
                pool = members[favorites[rng.choice(n_favorite_categories, p=weights)]]
                candidate = int(rng.choice(pool, p=popularity[pool] / popularity[pool].sum()))
            for _ in range(n_items):  # walk the cycle to the next unseen item
                if candidate not in seen:
                    break
                candidate = next_item[candidate]
            if candidate in seen:  # the whole category was seen: any unseen item
                candidate = int(rng.choice(np.setdiff1d(np.arange(n_items), list(seen))))
            seen.add(int(candidate))
            users.append(u)
            items_out.append(int(candidate))
            stamps.append(t)
            t += float(rng.exponential(3600.0)) + 1.0
            prev = int(candidate)

    log = InteractionLog.from_records(np.asarray(users), np.asarray(items_out), np.asarray(stamps))
    texts = {}
    used: set[str] = set()
    for i in range(n_items):
        words = _CATEGORY_WORDS[names[category[i]]]
        title = f"{_ADJECTIVES[rng.randint(len(_ADJECTIVES))]} {words[rng.randint(len(words))]} {_NOUNS[rng.randint(len(_NOUNS))]}"
        base, k = title, 2
        while title in used:
            title, k = f"{base} {k}", k + 1
        used.add(title)
        texts[i] = ItemText(title, (names[category[i]],))
    return Dataset(log, ItemTextTable(texts).restrict(log.items))

