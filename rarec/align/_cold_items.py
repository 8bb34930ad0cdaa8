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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data import ItemText

#: Cold items compared with the catalogue at once (bounds the memory of the sparse similarity block).
_CHUNK = 2048


def nearest_known_items(texts: Sequence[ItemText | None], n_known: int) -> np.ndarray:
    """For each item after the first ``n_known``, the index of the known item whose text is most similar.

    Similarity is the cosine of TF-IDF vectors of ``title (categories)``;
    ties go to the lower index. ``-1`` where an item shares no word with any
    known item's text (or no known item has text).
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    documents = [t.render() if t is not None else "" for t in texts]
    nearest = np.full(len(documents) - n_known, -1, dtype=np.int64)
    if not len(nearest):
        return nearest
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    try:
        known = normalize(vectorizer.fit_transform(documents[:n_known]))
    except ValueError:  # no known item has a word the vectorizer keeps
        return nearest
    known_t = known.T.tocsr()
    for begin in range(0, len(nearest), _CHUNK):
        cold = normalize(vectorizer.transform(documents[n_known + begin:n_known + begin + _CHUNK]))
        similarity = (cold @ known_t).tocsr()
        best = np.asarray(similarity.argmax(axis=1)).ravel()
        found = similarity.max(axis=1).toarray().ravel() > 0
        nearest[begin:begin + len(best)] = np.where(found, best, -1)
    return nearest


def with_cold_items(embeddings: torch.Tensor, texts: Sequence[ItemText | None]) -> torch.Tensor:
    """CF item embeddings (n, d) extended to one row per text: an added item gets its nearest known item's
    embedding (:func:`nearest_known_items`), or the mean embedding when it shares no word with any."""
    n_known = embeddings.shape[0]
    if len(texts) <= n_known:
        return embeddings
    nearest = torch.as_tensor(nearest_known_items(texts, n_known))
    rows = embeddings[nearest.clamp(min=0)]
    rows[nearest < 0] = embeddings.mean(0)
    return torch.cat([embeddings, rows])
