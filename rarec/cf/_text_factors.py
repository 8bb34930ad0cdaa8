"""The items' words as factors appended to the ID vectors (``RARecommender(text_factors=r)``, off by default).

On a sparse catalogue with informative titles (Amazon Beauty: nine items per
user, titles that name the brand and the product) the words say what the
interactions cannot: with no training, SASRec's score plus a quarter of the
TF-IDF cosine between a user's history and an item ranks the validation items
about a sixth higher than SASRec alone (docs/benchmarks.md). The alignment
module learns only what its ID inputs express, so the words enter those
inputs, as EASE's factors do (:class:`CooccurrenceFactors`).

Each item's text, rendered as ``title (categories)``, is a unit-length TF-IDF
row ``x_i``; the known items' rows ``X ~ U S V^T`` are truncated to the
``rank`` leading singular directions. Item ``i``'s factor is ``x_i V`` and a
history's the unit-length mean of its items' factors, so their dot product is
the TF-IDF cosine of the history's mean and the item, restricted to those
directions (exact at full rank). An item added after fit gets the factor of
its own text (the vocabulary and weights stay the known items').
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data import ItemText
from ._ease import history_matrix
from ._id_factors import IdFactors


def _documents(texts: Sequence[ItemText | None]) -> list[str]:
    return [t.render() if t is not None else "" for t in texts]


def _vectorizer(known_texts: Sequence[ItemText | None]):
    """The TF-IDF of the known items' texts (deterministic: refitted on load from the saved texts)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True).fit(_documents(known_texts))


class TextFactors(IdFactors):
    """Rank-``r`` TF-IDF factors of the item texts: ``users(histories) @ items.T`` approximates the TF-IDF cosine
    of each history's mean and every item (times the factor :meth:`~IdFactors.scaled_to` sets).

    Parameters
    ----------
    components : tensor of shape (vocabulary, r)
        ``V``: the leading right singular vectors of the known items' TF-IDF rows.
    known_texts : list of ItemText or None
        The known items' texts in item-index order (the vocabulary and its weights are fitted on them).
    scale : float, default 1.0
        Both sides' factor (the score's is its square).
    vectorizer : fitted TfidfVectorizer, optional
        The TF-IDF already fitted on ``known_texts`` (it is refitted from them when not given).
    """

    def __init__(self, components: torch.Tensor, known_texts: Sequence[ItemText | None], scale: float = 1.0,
                 vectorizer=None) -> None:
        self.components, self.known_texts, self.scale = components.float(), list(known_texts), float(scale)
        self._vectorizer = _vectorizer(self.known_texts) if vectorizer is None else vectorizer
        if len(self._vectorizer.vocabulary_) != self.components.shape[0]:
            raise ValueError(f"the components cover {self.components.shape[0]} words; the known texts have "
                             f"{len(self._vectorizer.vocabulary_)}.")
        self._unit_items = self._projected(self.known_texts)  # before scaling: users average these

    @classmethod
    def fit(cls, known_texts: Sequence[ItemText | None], rank: int) -> TextFactors:
        """The ``rank`` leading directions (fewer when the texts have fewer words or items) of the known texts'
        TF-IDF rows. Deterministic: the randomised SVD draws from a seed of its own. Raises ``ValueError`` when
        no text holds a word the vectorizer keeps."""
        from sklearn.preprocessing import normalize
        from sklearn.utils.extmath import randomized_svd

        vectorizer = _vectorizer(known_texts)
        rows = normalize(vectorizer.transform(_documents(known_texts)))
        rank = max(1, min(rank, *rows.shape))
        _, _, right_t = randomized_svd(rows, rank, random_state=0)
        return cls(torch.as_tensor(right_t.T.copy()), known_texts, vectorizer=vectorizer)

    @property
    def items(self) -> torch.Tensor:
        """Every known item's factor (n_items, r)."""
        return self._unit_items * self.scale

    def for_texts(self, texts: Sequence[ItemText | None]) -> torch.Tensor:
        """The factors (n, r) of any item texts, known or added after fit (zeros for a text of unknown words)."""
        return self._projected(texts) * self.scale

    def _projected(self, texts: Sequence[ItemText | None]) -> torch.Tensor:
        """The unit-length TF-IDF rows of ``texts`` projected on the components (before the scale)."""
        from sklearn.preprocessing import normalize

        rows = normalize(self._vectorizer.transform(_documents(texts)))
        return torch.as_tensor(rows @ self.components.numpy(), dtype=torch.float32)

    def users(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """The factors (n, r) of histories: the unit-length mean of their items' factors (times the scale)."""
        rows = history_matrix([np.asarray(h) for h in histories], len(self.known_texts))
        mean = torch.as_tensor(rows @ self._unit_items.numpy())
        return torch.nn.functional.normalize(mean, dim=1) * self.scale

    def rescaled(self, factor: float) -> TextFactors:
        return TextFactors(self.components, self.known_texts, self.scale * factor, vectorizer=self._vectorizer)
