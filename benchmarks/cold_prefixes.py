"""Which ID prefix should a cold item get? Re-encode the cold items of one saved cold-items fit under each rule.

    python benchmarks/cold_items.py --rows rarec_id_dropout --seeds 0 --users 4000 --keep-models /tmp/cold_models
    python benchmarks/cold_prefixes.py /tmp/cold_models/rarec_id_dropout_seed0
    python benchmarks/cold_prefixes.py --id-vectors --text-rank 512 --text-weight 0.5   # no model, no LLM

``add_items`` gives an item the CF backbone never saw the CF embedding of
its nearest catalogue item by text (TF-IDF cosine of title and categories)
as its ID prefix. A refit of the cold-item benchmark costs about 40 minutes
on the CPU; the prefix rule needs none: this script loads the warm model
that ``cold_items.py --keep-models`` saved (fitted before ``add_items``),
adds the cold items once, and then for each rule replaces the cold items'
ID prefixes, re-encodes those items alone (the users and the warm items keep
their vectors) and evaluates the cold test of ``cold_items.py``, paired
with its TF-IDF row on the same users (read from its results file).

Rules (K neighbours, the warm items with the highest TF-IDF cosine, the
vectorizer fitted on the warm items' texts as ``add_items`` fits it):

- ``nearest``: ``add_items``' own rule (reproduces the cold-items row);
- ``mean K``: the plain mean of the K neighbours' CF embeddings;
- ``weighted K pP``: their mean weighted by cosine to the power P, rescaled
  to the nearest neighbour's norm (a plain mean of many is shrunk towards
  the centre, where items are never ranked high);
- ``blend A``: a diagnostic outside the ID path: the cold item's own
  vector (``nearest`` prefix) mixed with its 10 neighbours' final vectors,
  weighted by cosine, A of its own.

``--id-vectors`` asks the same question of the ID vectors alone, with no
LLM and no saved model, and without the test users: the cold-items split's
cached SASRec ranks the warm catalogue for 3,000 seeded users (at least
three warm interactions each; their last one, which SASRec did not train
on, is the validation item), each validation item *as if added after fit*:
its SASRec vector is replaced by the rule's mix of its nearest *other* warm
items' (its own text factors kept, with ``--text-rank``/``--text-weight``).
This is the fit's own check of the text factors, for every rule.

Results: benchmarks/results/cold_prefixes_<data folder>.json (``..._id_vectors[_text<rank>x<weight>].json``
with ``--id-vectors``); printed, not written to the docs page; the page quotes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cold_items import HERE, KS, METRICS, as_log, cold_split, results_path, same_users, warm_catalogue
from common import read_dataset, results_json
from objective_study import mean_and_per_user

from rarec import RARecommender
from rarec.metrics import paired_difference

RULES = ("nearest", "mean 10", "weighted 3 p1", "weighted 10 p1", "weighted 10 p4", "blend 0.5")


def warm_similarity(texts, n_warm: int) -> np.ndarray:
    """TF-IDF cosine (n_cold, n_warm) of each item after the first ``n_warm`` with each warm item, the
    vectorizer fitted on the warm items' texts (``add_items``' rule)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    documents = [t.render() if t is not None else "" for t in texts]
    vectorizer = TfidfVectorizer(sublinear_tf=True)
    warm = normalize(vectorizer.fit_transform(documents[:n_warm]))
    cold = normalize(vectorizer.transform(documents[n_warm:]))
    return (cold @ warm.T).toarray().astype(np.float32)


def neighbour_mix(similarity: np.ndarray, rows: torch.Tensor, k: int, power: float = 1.0,
                  rescale: bool = True) -> torch.Tensor:
    """For each cold item (a row of ``similarity``), the mean of ``rows`` over its ``k`` most similar warm
    items, weighted by similarity ** ``power`` (``power=0``: a plain mean), and with ``rescale`` given the norm
    of its nearest item's row. An item with no similar warm item gets the mean row."""
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    weights = torch.as_tensor(np.take_along_axis(similarity, top, axis=1), dtype=rows.dtype)
    found = weights[:, 0] > 0
    weights = weights.clamp(min=0) ** power if power else torch.ones_like(weights)
    weights = weights / weights.sum(1, keepdim=True).clamp(min=1e-12)
    neighbours = rows[torch.as_tensor(top)]  # (n_cold, k, d)
    mixed = (weights[:, :, None] * neighbours).sum(1)
    if rescale:
        mixed = mixed * neighbours[:, 0].norm(dim=1, keepdim=True) / mixed.norm(dim=1, keepdim=True).clamp(min=1e-12)
    mixed[~found] = rows.mean(0)
    return mixed


def parse_rule(rule: str) -> tuple[str, dict]:
    """``"weighted 10 p4"`` -> ("weighted", {"k": 10, "power": 4.0}); see the module's list."""
    name, *rest = rule.split()
    if name == "nearest":
        return name, {"k": 1, "power": 0.0, "rescale": False}
    if name == "mean":
        return name, {"k": int(rest[0]), "power": 0.0, "rescale": False}
    if name == "weighted":
        return name, {"k": int(rest[0]), "power": float(rest[1].lstrip("p")), "rescale": True}
    if name == "blend":
        return name, {"own": float(rest[0])}
    raise ValueError(f"unknown rule {rule!r}; known forms: {', '.join(RULES)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="a warm model saved by cold_items.py --keep-models")
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/amazon-beauty")
    parser.add_argument("--rules", default=";".join(RULES), help="semicolon-separated rules")
    parser.add_argument("--id-vectors", action="store_true", help="rank with the ID vectors alone, no LLM and no "
                        "model: the warm validation items as if added after fit (see above)")
    parser.add_argument("--text-rank", type=int, default=0, help="--id-vectors: append this many text factors")
    parser.add_argument("--text-weight", type=float, default=0.5, help="--id-vectors: the text factors' weight")
    args = parser.parse_args()
    if args.id_vectors:
        return id_vector_rules(args)
    if args.model is None:
        parser.error("give a saved model, or --id-vectors")
    log, text = read_dataset(args.data)
    texts = text.align(log.items, on_unknown="ignore")
    train, pairs, cold = cold_split(log, 0.10, 0)
    _, _, cold_text = warm_catalogue(train, texts, cold)
    test = as_log(pairs, log)
    held_out = list(zip(test.users.decode(test.user_codes), test.items.decode(test.item_codes)))
    tfidf = next(r["per_user"] for r in json.loads(results_path(args.data).read_text())["rows"]
                 if r["row"] == "tfidf")

    out = {"model": str(args.model), "dataset": args.data.name, "rows": []}
    path = HERE / "results" / f"cold_prefixes_{args.data.name}.json"
    for row in try_rules(RARecommender.load(args.model), cold_text, held_out, tfidf, args.rules.split(";")):
        print(json.dumps(row), file=sys.stderr)
        out["rows"].append(row)
        path.write_text(results_json(out))


def try_rules(rec: RARecommender, cold_text: dict, held_out: list, tfidf: dict, rules: list[str]):
    """Add the cold items to the warm model ``rec``, then for each rule give them its ID prefixes (or vectors),
    evaluate the cold test ``held_out`` and yield the row, paired with TF-IDF's per-user metrics ``tfidf``."""
    n_warm = rec.n_items_
    rec.add_items(cold_text)
    towers, added = rec.towers_, np.arange(n_warm, rec.n_items_)
    similarity = warm_similarity(towers.texts, n_warm)
    cf, own = towers.item_cf[:n_warm, 0].clone(), rec.item_vectors_[n_warm:].clone()
    for rule in rules:
        start = time.perf_counter()
        name, options = parse_rule(rule)
        if name == "blend":
            mix = neighbour_mix(similarity, rec.item_vectors_[:n_warm], 10, 1.0, rescale=False)
            rec.item_vectors_[n_warm:] = options["own"] * own + (1 - options["own"]) * mix
        else:
            towers.item_cf[n_warm:, 0] = neighbour_mix(similarity, cf, **options)
            rec.item_vectors_[n_warm:] = towers.encode_items(added)
        found = mean_and_per_user(rec.evaluate(held_out, ks=KS, metrics=METRICS, per_user=True))
        same = same_users(tfidf, found["per_user"]["users"])
        hr, ndcg = (paired_difference([found["per_user"]], same, m) for m in ("hr@100", "ndcg@10"))
        yield {"rule": rule, "seconds": time.perf_counter() - start,
               **{m: found[m] for m in ("hr@10", "ndcg@10", "hr@100", "ndcg@100")},
               "hr@100 / tfidf": found["hr@100"] / max(float(np.mean(same["hr@100"])), 1e-12),
               "paired hr@100": [hr["mean_difference"], hr["standard_error"]],
               "paired ndcg@10": [ndcg["mean_difference"], ndcg["standard_error"]]}


VALIDATION_USERS = 3000


def target_metrics(scores: torch.Tensor, targets: np.ndarray, target_scores: torch.Tensor,
                   seen: torch.Tensor) -> dict:
    """NDCG@10, HR@10 and HR@100 of one target item per user (row of ``scores``, (n_users, n_items)) when each
    target's own score is replaced by ``target_scores`` and the ``seen`` items are excluded (ties rank the target
    first)."""
    rows = torch.arange(len(targets))
    s = scores.clone()
    s[rows, torch.as_tensor(targets)] = target_scores.to(s)
    s[seen] = -float("inf")
    rank = (s > s[rows, torch.as_tensor(targets)][:, None]).sum(1).numpy()
    return {"ndcg@10": float(np.mean(np.where(rank < 10, 1 / np.log2(rank + 2), 0.0))),
            "hr@10": float(np.mean(rank < 10)), "hr@100": float(np.mean(rank < 100))}


def id_vector_rules(args) -> None:
    """``--id-vectors``: each rule ranks the warm validation items as if added after fit, with the ID vectors
    alone (the cold split's cached SASRec, plus text factors with ``--text-rank``); see the module's text."""
    from cold_items import warm_sasrec
    from rarec.cf import TextFactors

    log, text = read_dataset(args.data)
    texts = text.align(log.items, on_unknown="ignore")
    train, _, cold = cold_split(log, 0.10, 0)
    warm, warm_text, _ = warm_catalogue(train, texts, cold)
    backbone = warm_sasrec(warm, args)
    n_warm, window = warm.n_items, RARecommender().max_history
    item_texts = [warm_text.get(i) for i in warm.items.decode(np.arange(n_warm))]
    sequences = warm.user_sequences()
    users = np.flatnonzero([len(s) >= 3 for s in sequences])
    users = np.sort(np.random.default_rng(0).permutation(users)[:VALIDATION_USERS])
    histories, targets = [sequences[u][:-1] for u in users], np.array([sequences[u][-1] for u in users])
    rows = torch.arange(len(users))
    items = backbone.item_embeddings().float()
    user_vectors = torch.cat([backbone.user_embeddings([h[-window:] for h in histories[b:b + 500]])[:, 0].float()
                              for b in range(0, len(histories), 500)])
    scores, own_extra = user_vectors @ items.T, torch.zeros(len(users))
    if args.text_rank:
        known = [s for s in sequences if len(s)]
        factors = TextFactors.fit(item_texts, args.text_rank).scaled_to(
            args.text_weight, known, lambda r: backbone.score_histories([known[i][-window:] for i in r]))
        scores = scores + factors.users(histories).float() @ factors.items.float().T
        own_extra = scores[rows, targets] - (user_vectors * items[targets]).sum(1)
    seen = torch.zeros(scores.shape, dtype=torch.bool)
    for r, history in enumerate(histories):
        seen[r, torch.as_tensor(history)] = True
    unique = np.unique(targets)
    similarity = warm_similarity(item_texts + [item_texts[i] for i in unique], n_warm)
    similarity[np.arange(len(unique)), unique] = -1.0  # never its own neighbour
    where = {item: r for r, item in enumerate(unique)}

    def ranked(target_scores: torch.Tensor) -> dict:
        return target_metrics(scores, targets, target_scores, seen)

    out = {"dataset": args.data.name, "users": len(users), "text_rank": args.text_rank,
           "text_weight": args.text_weight if args.text_rank else None,
           "as_they_are": ranked(scores[rows, targets]), "rows": []}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}), file=sys.stderr)
    suffix = f"_text{args.text_rank}x{args.text_weight:g}" if args.text_rank else ""
    path = HERE / "results" / f"cold_prefixes_{args.data.name}_id_vectors{suffix}.json"
    for rule in args.rules.split(";"):
        name, options = parse_rule(rule)
        if name == "blend":
            continue  # a mix of final vectors: there are none without a model
        borrowed = neighbour_mix(similarity, items, **options)[[where[t] for t in targets]]
        row = {"rule": rule, **ranked((user_vectors * borrowed).sum(1) + own_extra)}
        print(json.dumps(row), file=sys.stderr)
        out["rows"].append(row)
        path.write_text(results_json(out))


if __name__ == "__main__":
    main()
