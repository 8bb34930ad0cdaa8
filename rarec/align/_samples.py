"""Training samples of the alignment stage: (history window, next item) pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cf import next_item_positions


@dataclass
class AlignmentSamples:
    """Parallel arrays, one entry per sample.

    Attributes
    ----------
    users : ndarray of int64 (S,)
        The user of each sample.
    ends : ndarray of int64 (S,)
        The target's position in the user's sequence; the history is the items before it.
    targets : ndarray of int64 (S,)
        The item to predict.
    """

    users: np.ndarray
    ends: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def subset(self, rows: np.ndarray) -> AlignmentSamples:
        return AlignmentSamples(self.users[rows], self.ends[rows], self.targets[rows])


def all_next_item_samples(sequences: list[np.ndarray]) -> AlignmentSamples:
    """Every (prefix, next item) pair with a non-empty prefix, of every sequence."""
    users, ends = next_item_positions(np.array([len(seq) for seq in sequences]))
    if len(users) == 0:
        raise ValueError("no user has two or more interactions: there is no (history, next item) pair to train on.")
    targets = np.array([sequences[u][e] for u, e in zip(users, ends)], dtype=np.int64)
    return AlignmentSamples(users, ends, targets)


def select_random_samples(samples: AlignmentSamples, max_samples: int | None, rng: np.random.Generator) -> AlignmentSamples:
    """At most ``max_samples`` samples drawn uniformly without replacement (all when ``None``).
    """
    if max_samples is None or len(samples) <= max_samples:
        return samples
    return uniform_subset(samples, max_samples, rng)


def uniform_subset(samples: AlignmentSamples, size: int, rng: np.random.Generator) -> AlignmentSamples:
    """``size`` samples drawn uniformly without replacement, kept in their original order."""
    return samples.subset(np.sort(rng.choice(len(samples), size=size, replace=False)))
