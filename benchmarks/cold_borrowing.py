"""Cold items: does a cold item's borrowed CF part rank better from several text neighbours than from one?

    python benchmarks/cold_borrowing.py --split valid --variants 1,2,5,20,5n,20n

``add_items`` gives an item the fit never saw the CF embedding of its nearest
known item by text (TF-IDF cosine of title and categories). This measures,
with no LLM, the ID vectors an RA-Rec row distils (``cold_items.py``'s
``id_vectors`` and ``id_vectors_text_factors`` rows, which read the same
cached SASRec) when that part comes instead from the ``k`` nearest known
items, their embeddings averaged with the cosines as weights (``k`` alone),
and the average rescaled to the neighbours' mean norm (``kn``): the average
of several items' embeddings is shorter than any of them, and a dot-product
ranking puts short vectors low. ``1`` is ``add_items``'s own rule.

Prints HR@100, NDCG@10 and HR@10 of each variant; writes nothing (session 56:
every average ranked the cold items worse than the nearest item alone,
docs/benchmarks.md).

    python benchmarks/cold_borrowing.py --split valid --scales 1x1,1x1.25,1.25x1.25,0.75x1

``--scales AxB,...`` instead multiplies each cold item's ID vector, in the
text-factor row, by A in its borrowed CF part and by B in its own text
factors. It measures how much the protocol rewards scale alone: every test
user's target is a cold item, so any uniform lift of the cold items' scores
raises HR@100 with no better knowledge of the user (session 57: 1.25x1.25
took validation from 0.1961 to 0.2593). No scale is tuned on it; RA-Rec's
cold items keep the scale the fit gives them.

Session 59 asked whether any other teacher has more reach on cold items,
each with the nearest item's CF part and measured the same way:

- ``--variants ridge<alpha>[m<mix>][n]``: a cold item's CF part predicted
  from its TF-IDF vector by a ridge map fitted on the known items, mixed with
  the nearest item's embedding at share ``mix``, ``n`` rescaled to its norm;
- ``--recency G,...``: a user's text factors as the mean of the history's
  item factors weighted by ``G`` to the power of each item's age (1: the
  plain mean, :class:`rarec.cf.TextFactors`; 0: the last item alone);
- ``--vectorizers NAME,...``: the text factors of another TF-IDF
  (:data:`VECTORIZERS`).

None ranked the cold items higher at 100 than the plain rules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import cold_items

import rarec.align._cold_items as cold_module

HERE = Path(__file__).resolve().parent
#: add_items's own rule, kept before any stand-in replaces it
ADD_ITEMS_RULE = cold_module.with_cold_items


def tfidf_rows(texts, n_known: int):
    """TF-IDF rows (sparse, unit length) of the known items' texts (the first ``n_known``) and of the added ones',
    with the vocabulary and weights of the known items (as ``add_items``'s neighbour search has them)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True)
    known = vectorizer.fit_transform(cold_module._documents(texts[:n_known]))
    return known, vectorizer.transform(cold_module._documents(texts[n_known:]))


def neighbour_average(k: int, rescale: bool):
    """A stand-in for :func:`rarec.align._cold_items.with_cold_items`: each added item's CF part is the cosine-weighted
    mean of its ``k`` most similar known items' embeddings (rescaled to their weighted mean norm if ``rescale``); the
    mean embedding where it shares no word with any."""
    from sklearn.preprocessing import normalize

    def with_cold_items(embeddings: torch.Tensor, texts, neighbours=None) -> torch.Tensor:
        n_known = embeddings.shape[0]
        if len(texts) <= n_known:
            return embeddings
        known, added = tfidf_rows(texts, n_known)
        similarity = (normalize(added) @ normalize(known).T).toarray()
        top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        weights = torch.as_tensor(np.take_along_axis(similarity, top, 1), dtype=embeddings.dtype)
        total = weights.sum(1, keepdim=True)
        weights = torch.where(total > 0, weights / total.clamp(min=1e-12), torch.zeros_like(weights))
        chosen = embeddings[torch.as_tensor(top)]  # (n_added, k, d)
        rows = torch.einsum("ck,ckd->cd", weights, chosen)
        if rescale:
            norms = torch.einsum("ck,ck->c", weights, chosen.norm(dim=2))
            rows = rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-12) * norms[:, None]
        rows[total[:, 0] <= 0] = embeddings.mean(0)
        return torch.cat([embeddings, rows])
    return with_cold_items


def ridge_prediction(alpha: float, mix: float, rescale: bool = False):
    """A stand-in for :func:`rarec.align._cold_items.with_cold_items`: a ridge regression (penalty ``alpha``) fitted
    on the known items maps an item's TF-IDF vector (title and categories) to its CF embedding, and an added item's
    CF part is ``mix`` times that prediction plus ``1 - mix`` times its nearest known item's embedding (``mix`` 1:
    the prediction alone), rescaled to the nearest item's norm if ``rescale`` (a ridge prediction is shrunk toward
    the mean, and a dot-product ranking puts short vectors low)."""
    from sklearn.linear_model import Ridge

    def with_cold_items(embeddings: torch.Tensor, texts, neighbours=None) -> torch.Tensor:
        n_known = embeddings.shape[0]
        if len(texts) <= n_known:
            return embeddings
        known, added = tfidf_rows(texts, n_known)
        model = Ridge(alpha=alpha).fit(known, embeddings.double().numpy())
        predicted = torch.as_tensor(model.predict(added), dtype=embeddings.dtype)
        nearest = ADD_ITEMS_RULE(embeddings, texts, neighbours)[n_known:]
        rows = mix * predicted + (1 - mix) * nearest
        if rescale:
            rows = rows / rows.norm(dim=1, keepdim=True).clamp(min=1e-12) * nearest.norm(dim=1, keepdim=True)
        return torch.cat([embeddings, rows])
    return with_cold_items


def borrowing_rule(variant: str):
    """The stand-in for ``with_cold_items`` a ``--variants`` entry names (None: ``add_items``'s own rule)."""
    if variant.startswith("ridge"):  # ridge<alpha>[m<mix>][n]
        alpha, _, mix = variant.removeprefix("ridge").rstrip("n").partition("m")
        return ridge_prediction(float(alpha), float(mix or 1.0), variant.endswith("n"))
    k, rescale = int(variant.rstrip("n")), variant.endswith("n")
    return None if (k, rescale) == (1, False) else neighbour_average(k, rescale)


#: The TF-IDF settings ``--vectorizers`` may give the text factors (``words``: rarec's own).
VECTORIZERS = {
    "words": dict(sublinear_tf=True),
    "bigrams": dict(sublinear_tf=True, ngram_range=(1, 2), min_df=2),
    "min_df2": dict(sublinear_tf=True, min_df=2),
    "char_wb": dict(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5), min_df=2),
}


def recency_weighted_users(gamma: float):
    """A stand-in for :meth:`rarec.cf.TextFactors.users`: each history's factor is the unit-length mean of its
    items' factors weighted by ``gamma`` to the power of their age (0 for the last item)."""
    def users(self, histories) -> torch.Tensor:
        out = torch.zeros(len(histories), self._unit_items.shape[1])
        for row, history in enumerate(histories):
            history = np.asarray(history)
            if len(history):
                weights = torch.as_tensor(gamma ** np.arange(len(history))[::-1].copy(), dtype=torch.float32)
                out[row] = weights @ self._unit_items[torch.as_tensor(history)]
        return torch.nn.functional.normalize(out, dim=1) * self.scale
    return users


def teacher_rows(args, train, test, texts, cold) -> list[dict]:
    """The text-factor ID vectors with the users' text factors recency-weighted (``--recency``) or the text factors
    of another TF-IDF (``--vectorizers``), one row per setting."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    import rarec.cf._text_factors as text_module
    from rarec.cf import TextFactors

    settings = [("recency", g) for g in filter(None, args.recency.split(","))]
    settings += [("vectorizer", name) for name in filter(None, args.vectorizers.split(","))]
    users, vectorizer, rows = TextFactors.users, text_module._vectorizer, []
    try:
        for kind, value in settings:
            if kind == "recency":
                TextFactors.users = users if float(value) == 1.0 else recency_weighted_users(float(value))
            else:
                TextFactors.users = users
                text_module._vectorizer = lambda known, kw=VECTORIZERS[value]: TfidfVectorizer(**kw).fit(
                    text_module._documents(known))
            row = cold_items.id_vectors_row("id_vectors_text_factors", train, test, texts, cold, args)
            rows.append({kind: value, **{key: row[key] for key in ("row", "hr@100", "ndcg@10", "hr@10")}})
            print(f"{kind} {value:>8} HR@100 {row['hr@100']:.4f}  NDCG@10 {row['ndcg@10']:.4f}  "
                  f"HR@10 {row['hr@10']:.4f}", flush=True)
    finally:
        TextFactors.users, text_module._vectorizer = users, vectorizer
    return rows


def run(args) -> list[dict]:
    log, text = cold_items.read_dataset(args.data)
    texts = text.align(log.items, on_unknown="ignore")
    train, test_pairs, cold = cold_items.cold_split(log, cold_items.COLD_FRACTION, cold_items.SPLIT_SEED)
    if args.split == "valid":
        train, test_pairs, cold = cold_items.validation_split(train, cold_items.COLD_FRACTION)
        args.cache = HERE / "output" / f"cold_items_valid_sasrec_{args.data.name}"
    test = cold_items.as_log(test_pairs, log)
    if args.scales:
        return scale_rows(args, train, test, texts, cold)
    if args.recency or args.vectorizers:
        return teacher_rows(args, train, test, texts, cold)
    original, rows = ADD_ITEMS_RULE, []
    try:
        for variant in args.variants.split(","):
            cold_module.with_cold_items = borrowing_rule(variant) or original
            for name in ("id_vectors", "id_vectors_text_factors"):
                row = cold_items.id_vectors_row(name, train, test, texts, cold, args)
                rows.append({"variant": variant, **{key: row[key] for key in ("row", "hr@100", "ndcg@10", "hr@10")}})
                print(f"{variant:>4} {name:<24} HR@100 {row['hr@100']:.4f}  NDCG@10 {row['ndcg@10']:.4f}  "
                      f"HR@10 {row['hr@10']:.4f}", flush=True)
    finally:
        cold_module.with_cold_items = original
    return rows


def scale_rows(args, train, test, texts, cold) -> list[dict]:
    """The text-factor ID vectors with each cold item's CF part times A and its text factors times B (``AxB``)."""
    rows = []
    for scale in args.scales.split(","):
        args.cold_scale = tuple(float(x) for x in scale.split("x"))
        row = cold_items.id_vectors_row("id_vectors_text_factors", train, test, texts, cold, args)
        rows.append({"scale": scale, **{key: row[key] for key in ("row", "hr@100", "ndcg@10", "hr@10")}})
        print(f"{scale:>10} HR@100 {row['hr@100']:.4f}  NDCG@10 {row['ndcg@10']:.4f}  HR@10 {row['hr@10']:.4f}",
              flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/amazon-beauty")
    parser.add_argument("--split", choices=("test", "valid"), default="valid")
    parser.add_argument("--variants", default="1,2,3,5,10,20,2n,5n,20n",
                        help="neighbour counts k, each with 'n' to rescale the average to the neighbours' norm; "
                             "ridge<alpha>[m<mix>][n]: a ridge map from the TF-IDF vector to the CF embedding, mixed "
                             "with the nearest item's embedding at share mix (default 1), 'n' rescaled to the nearest "
                             "item's norm")
    parser.add_argument("--scales", default="",
                        help="AxB,...: instead of --variants, scale each cold item's CF part by A and its text factors "
                             "by B in the text-factor ID vectors")
    parser.add_argument("--recency", default="",
                        help="G,...: instead of --variants, the users' text factors weighted by G^age (1: the mean)")
    parser.add_argument("--vectorizers", default="", help="NAME,...: instead of --variants, the text factors of "
                        f"another TF-IDF, of {', '.join(VECTORIZERS)}")
    parser.add_argument("--text-rank", type=int, default=512)
    parser.add_argument("--text-weight", type=float, default=0.5)
    args = parser.parse_args(argv)
    args.users = None
    run(args)


if __name__ == "__main__":
    main()
