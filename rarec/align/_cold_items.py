"""The ID prefix of an item the CF backbone never saw: the CF embedding of its nearest known item by text.

An item added after ``fit`` (``RARecommender.add_items``) has a title and
categories but no CF embedding, and the item tower needs one for its ID
prefix. The trained towers rank mostly through that prefix, so the choice
decides whether such an item can ever reach a user's top list: the mean CF
item embedding (the fallback up to rarec 0.2.0) put it among the average
items, which are never ranked high; the embedding of the known item whose
text is closest (TF-IDF cosine over title and categories) puts it where
that item is ranked (docs/benchmarks.md, cold items).

The TF-IDF vocabulary and weights come from the known items' texts alone, so
an added item's prefix depends only on its own text and the fitted catalogue:
it is the same whether items are added one by one or together, and after a
save and load.

:func:`borrowed_embeddings` gives each known item its nearest *other*
item's embedding the same way: the trainer's ``id_dropout`` encodes a share
of the training items with it, as if they had been added after fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data import ItemText

#: Cold items compared with the catalogue at once (bounds the memory of the sparse similarity block).
_CHUNK = 2048


class TextNeighbours:
    """The known items' TF-IDF vectors of ``title (categories)``, fitted once: the nearest known item of any text.

    ``add_items`` keeps one for the fitted catalogue, so that adding items one
    call at a time does not refit the vectorizer on every known item's text.
    """

    def __init__(self, known: Sequence[ItemText | None]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        self._vectorizer = TfidfVectorizer(sublinear_tf=True)
        try:
            self._known_t = normalize(self._vectorizer.fit_transform(_documents(known))).T.tocsr()
        except ValueError:  # no known item has a word the vectorizer keeps
            self._known_t = None

    def nearest(self, texts: Sequence[ItemText | None], first_known: int | None = None) -> np.ndarray:
        """For each text, the index of the most similar known item (cosine; ties go to the lower index), ``-1``
        where it shares no word with any. ``first_known``: the texts are the known items from that index on, and
        none is its own neighbour (a duplicate title still is)."""
        from sklearn.preprocessing import normalize

        nearest = np.full(len(texts), -1, dtype=np.int64)
        if not len(nearest) or self._known_t is None:
            return nearest
        documents = _documents(texts)
        for begin in range(0, len(nearest), _CHUNK):
            query = normalize(self._vectorizer.transform(documents[begin:begin + _CHUNK]))
            similarity = (query @ self._known_t).tocoo()
            if first_known is not None:
                similarity.data[similarity.col == similarity.row + first_known + begin] = 0.0
            similarity = similarity.tocsr()
            similarity.eliminate_zeros()
            best = np.asarray(similarity.argmax(axis=1)).ravel()
            found = similarity.max(axis=1).toarray().ravel() > 0
            nearest[begin:begin + len(best)] = np.where(found, best, -1)
        return nearest


def nearest_known_items(texts: Sequence[ItemText | None], n_known: int) -> np.ndarray:
    """For each item after the first ``n_known``, the index of the known item whose text is most similar.

    Similarity is the cosine of TF-IDF vectors of ``title (categories)``;
    ties go to the lower index. ``-1`` where an item shares no word with any
    known item's text (or no known item has text).
    """
    return TextNeighbours(texts[:n_known]).nearest(texts[n_known:])


def nearest_other_items(texts: Sequence[ItemText | None]) -> np.ndarray:
    """For each item, the index of the most similar *other* item by text (as :func:`nearest_known_items`, with
    every item known): the ID an item borrows when training teaches the towers to rank items added later."""
    return TextNeighbours(texts).nearest(texts, first_known=0)


def _documents(texts: Sequence[ItemText | None]) -> list[str]:
    return [t.render() if t is not None else "" for t in texts]


def with_cold_items(embeddings: torch.Tensor, texts: Sequence[ItemText | None],
                    neighbours: TextNeighbours | None = None) -> torch.Tensor:
    """CF item embeddings (n, d) extended to one row per text: an added item gets its nearest known item's
    embedding (:func:`nearest_known_items`; ``neighbours``, the known items' index, when one is kept), or the
    mean embedding when it shares no word with any."""
    n_known = embeddings.shape[0]
    if len(texts) <= n_known:
        return embeddings
    if neighbours is None:
        neighbours = TextNeighbours(texts[:n_known])
    return torch.cat([embeddings, _embeddings_of(embeddings, neighbours.nearest(texts[n_known:]))])


def borrowed_embeddings(embeddings: torch.Tensor, texts: Sequence[ItemText | None],
                        neighbours: np.ndarray | None = None) -> torch.Tensor:
    """For each known item (rows of ``embeddings``, (n, d)), the CF embedding of its most similar other item by
    text (:func:`nearest_other_items`; ``neighbours``, its result, when the caller has it), or the mean embedding
    when it shares no word with any: the ID prefix an item added after fit gets, given to known items while
    training so the towers learn to rank with it."""
    if neighbours is None:
        neighbours = nearest_other_items(texts[:embeddings.shape[0]])
    return _embeddings_of(embeddings, neighbours)


def _embeddings_of(embeddings: torch.Tensor, nearest: np.ndarray) -> torch.Tensor:
    """``embeddings[nearest]``, with the mean embedding where ``nearest`` is -1 (no neighbour by text)."""
    nearest = torch.as_tensor(nearest)
    rows = embeddings[nearest.clamp(min=0)]
    rows[nearest < 0] = embeddings.mean(0)
    return rows
