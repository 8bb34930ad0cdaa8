"""What the ID vectors rank with EASE's co-occurrence factors appended, before any alignment (issue #16).

    python benchmarks/factor_check.py                                              # ML-100K
    python benchmarks/factor_check.py --data ../shared/data/amazon-beauty --users 4000

``RARecommender(cooccurrence_factors=r)`` appends EASE's r leading singular factors to the backbone's ID vectors, so
that their dot product is the backbone's score plus 0.25 x rank-r EASE; the student then distils that score. Before
the alignment stage the fit ranks its validation items with the backbone alone and with the factors, and keeps the
factors only if they win. This script runs that same step (``rarec._fit_steps.cooccurrence_factors``) on the
objective study's data, its shared SASRec and its evaluated users, for several ranks (and, to look for a setting
that would pass the check where the default does not, several weights and EASE L2 penalties, which the estimator
does not expose): the second NDCG@10 column is the ceiling a student of the ID vectors works towards, and "kept" is
what a fit with that setting would do. No LLM, no training.

    python benchmarks/factor_check.py --data ../shared/data/amazon-beauty --ranks 256 --weights 0.1,0.25 --l2 50
    python benchmarks/factor_check.py --data ../shared/data/amazon-beauty --ranks 512 --weights 0.1 --l2 50 \
        --text 512:0.25
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from common import DATASET_TITLES, dataset_suffix, read_dataset, results_json, write_section
from objective_study import shared_sasrec, user_subset

from rarec import RARecommender
import rarec._fit_steps as fit_steps
from rarec._fit_steps import train_valid
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
NARROW_KEYS = {"items": "narrow", "scores": "narrow_by_scores"}


def check_rank(backbone, fit_log, rank: int, weight: float | None = None, l2: float = 200.0,
               text: tuple[int, float] | None = None, texts=None, narrow: tuple[int, ...] = (),
               narrow_by: str = "items") -> dict:
    """The fit's own factor checks at this rank, on ``fit_log`` (what ``fit(X)`` is given); ``weight`` (default:
    the estimator's ``cooccurrence_teacher``) and EASE's ``l2`` (default 200). ``text``: (rank, weight) of text
    factors of ``texts`` (:class:`rarec.cf.TextFactors`), checked after EASE's as the fit checks them; the row's
    NDCG@10 with the factors is then the text check's (on top of the EASE factors if those were kept). ``narrow``:
    widths k to which the ID vectors with the kept factors are also cut (:func:`narrowed`), each ranked as the
    check ranks (``row["narrow"]`` by the item table, ``row["narrow_by_scores"]`` by the score matrix; k to
    NDCG@10)."""
    defaults = RARecommender()
    weight = defaults.cooccurrence_teacher if weight is None else weight
    text_rank, text_weight = text or (0, 0.0)
    rec = SimpleNamespace(cooccurrence_factors=rank, cooccurrence_teacher=weight, cooccurrence_l2=l2,
                          text_factors=text_rank, text_factor_weight=text_weight, max_history=defaults.max_history)
    train, valid = train_valid(fit_log, None)
    sequences = train.user_sequences()
    start, text_factors = time.perf_counter(), None
    factors, check = fit_steps.cooccurrence_factors(rec, backbone, sequences, valid)
    row = {**check, "rank": rank, "weight": weight, "l2": l2}
    if text is not None:
        text_factors, words = fit_steps.text_factors(rec, backbone, sequences, valid, texts, factors)
        row.update(text_rank=text_rank, text_weight=text_weight, ease_kept=check["kept"], kept=words["kept"],
                   **{"valid_ndcg@10_with_factors": words["valid_ndcg@10_with_text_factors"]})
    parts = [f for f in (factors, text_factors if text is not None else None) if f is not None]
    if parts and narrow:
        row[NARROW_KEYS[narrow_by]] = {str(k): narrowed(backbone, parts, k, sequences, valid, rec.max_history,
                                                        narrow_by) for k in narrow}
    return {**row, "seconds": time.perf_counter() - start}


def narrowed(backbone, parts, k: int, sequences, valid, max_history: int, by: str = "items") -> float:
    """Validation NDCG@10 (the fit's check) of the ID vectors (the backbone's, one interest, then each factor set
    of ``parts``) cut to ``k`` numbers. ``by="items"``: both sides projected on the ``k`` leading right singular
    directions of the item table, which keep as much of the item table as ``k`` numbers can. ``by="scores"``: the
    best rank-``k`` approximation of the fit users' score matrix (users from their whole training ``sequences``):
    the item table is whitened by the users' second moment, cut to its ``k`` leading directions, and the users are
    mapped so that their dot products with the cut items approximate the uncut scores."""
    from rarec.align._cooccurrence_teacher import validation_check

    def user_vectors(histories):
        users = backbone.user_embeddings([h[-max_history:] for h in histories])[:, 0].float()
        return torch.cat([users, *[p.users(histories).float() for p in parts]], dim=1)

    items = torch.cat([backbone.item_embeddings().float(), *[p.items.float() for p in parts]], dim=1)
    user_map, item_map = narrow_maps(items, k, by, user_vectors, [np.asarray(s) for s in sequences if len(s)])
    narrow_items = items @ item_map

    def alone(histories, users):
        return backbone.score_histories([h[-max_history:] for h in histories], users)

    def added(histories, seen):
        return (user_vectors(histories) @ user_map) @ narrow_items.T - alone(histories, None).float()
    return validation_check(sequences, valid.to_csr(), alone, added, "narrow")["valid_ndcg@10_with_narrow"]


def narrow_maps(items, k: int, by: str, user_vectors=None, histories=()) -> tuple:
    """The (D, k) maps of user and of item ID vectors for :func:`narrowed`."""
    if by == "items":
        basis = torch.linalg.svd(items, full_matrices=False)[2][:k].T
        return basis, basis
    with torch.no_grad():
        second = sum(v.double().T @ v.double() for v in
                     (user_vectors(histories[i:i + 1024]) for i in range(0, len(histories), 1024)))
    eigenvalues, eigenvectors = torch.linalg.eigh(second / len(histories))
    eigenvalues = eigenvalues.clamp_min(eigenvalues.max() * 1e-9)
    root, inverse_root = eigenvectors * eigenvalues.sqrt(), eigenvectors / eigenvalues.sqrt()  # u.i = (u W^-1)(i W)
    directions = torch.linalg.svd(items.double() @ root, full_matrices=False)[2][:k].T
    return (inverse_root @ directions).float(), (root @ directions).float()


def render(result: dict) -> str:
    lines = [f"Written by `benchmarks/factor_check.py` on {result['machine']}. The objective study's split and SASRec "
             f"(seed 0), {result['users']:,} fit users of {result['all_users']:,}; each fit user's last training item "
             "held out, as `fit` holds it out, and up to 2,000 of them ranked against the whole catalogue, their other "
             "items excluded. Factors fitted on the fit users' histories; the estimator's defaults are weight 0.25 and "
             "L2 200. With TF-IDF factors (`rarec.cf.TextFactors`, a research setting) the fit checks them after "
             "EASE's, on top of those if kept; the row gives that second check.", "",
             "| EASE rank | weight | EASE L2 | TF-IDF factors (rank, weight) | valid NDCG@10, SASRec "
             "| valid NDCG@10, ID vectors with the factors | kept by the fit | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        text = f"{row['text_rank']}, {row['text_weight']:g}" if "text_rank" in row else "–"
        lines.append(f"| {row['rank']} | {row.get('weight', 0.25):g} | {row.get('l2', 200.0):g} | {text} "
                     f"| {row['valid_ndcg@10_backbone']:.4f} | {row['valid_ndcg@10_with_factors']:.4f} "
                     f"| {'yes' if row['kept'] else 'no'} | {row['seconds']:.0f} |")
    narrow = [row for row in result["rows"] if any(row.get(key) for key in NARROW_KEYS.values())]
    if narrow:
        lines += ["", "The ID vectors with the kept factors cut to k numbers (`--narrow`; SASRec's own width is 64), "
                  "by the item table's k leading directions or by the best rank-k approximation of the fit users' "
                  "score matrix (`--narrow-by scores`):", "",
                  "| EASE rank | weight | EASE L2 | TF-IDF factors (rank, weight) | k | valid NDCG@10, cut by the "
                  "item table | valid NDCG@10, cut by the score matrix |", "|---|---|---|---|---|---|---|"]
        for row in narrow:
            text = f"{row['text_rank']}, {row['text_weight']:g}" if "text_rank" in row else "–"
            cuts = {key: row.get(key, {}) for key in NARROW_KEYS.values()}
            for k in sorted({k for cut in cuts.values() for k in cut}, key=int):
                figures = " | ".join(f"{cut[k]:.4f}" if k in cut else "–" for cut in cuts.values())
                lines.append(f"| {row['rank']} | {row.get('weight', 0.25):g} | {row.get('l2', 200.0):g} | {text} "
                             f"| {k} | {figures} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--users", type=int, default=None, help="the objective study's user subset (default: all)")
    parser.add_argument("--ranks", default="16,64,256")
    parser.add_argument("--weights", default=None, help="comma-separated factor weights (default: the estimator's)")
    parser.add_argument("--l2", default="200", help="comma-separated EASE L2 penalties")
    parser.add_argument("--text", default=None, help="comma-separated RANK:WEIGHT of TF-IDF factors appended too "
                        "(rarec.cf.TextFactors, a research setting of the fit), each with every setting above")
    parser.add_argument("--narrow", default="", help="comma-separated widths k: also rank the ID vectors with the "
                        "kept factors cut to their item table's k leading directions")
    parser.add_argument("--narrow-by", choices=sorted(NARROW_KEYS), default="items",
                        help="cut by the item table's leading directions or by the users' score matrix's")
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data) + (f"_{args.users}users" if args.users else "")
    results = HERE / "results" / f"factor_check{suffix}.json"
    if args.render:
        result = json.loads(results.read_text())
    else:
        log, item_text = read_dataset(args.data)
        split = leave_last_out(log, n_valid=0)
        backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{dataset_suffix(args.data)}")
        n_users = min(args.users or log.n_users, log.n_users)
        fit_log = user_subset(split, n_users).train
        weights = [None] if args.weights is None else [float(w) for w in args.weights.split(",")]
        texts = item_text.align(log.items, on_unknown="ignore")
        text_settings = [None] if args.text is None else [(int(t.split(":")[0]), float(t.split(":")[1]))
                                                          for t in args.text.split(",")]
        narrow = tuple(int(k) for k in args.narrow.split(",") if k)
        rows = [check_rank(backbone, fit_log, int(rank), weight, float(l2), text, texts, narrow, args.narrow_by)
                for l2 in args.l2.split(",")
                for weight in weights for rank in args.ranks.split(",") for text in text_settings]

        def setting(row: dict) -> tuple:
            return (row["rank"], row.get("weight", 0.25), row.get("l2", 200.0), row.get("text_rank", 0),
                    row.get("text_weight", 0.0))
        if results.exists():  # settings measured before and not now are kept
            before = {setting(r): r for r in json.loads(results.read_text())["rows"]}
            for row in rows:  # narrow cuts measured before and not now are kept too
                row.update({key: before[setting(row)][key] for key in NARROW_KEYS.values()
                            if key not in row and key in before.get(setting(row), {})})
            measured = {setting(r) for r in rows}
            rows = [r for key, r in before.items() if key not in measured] + rows
        rows.sort(key=lambda r: (-r.get("l2", 200.0), r.get("weight", 0.25), r["rank"], r.get("text_rank", 0),
                                 r.get("text_weight", 0.0)))
        result = {"dataset": args.data.name, "users": n_users, "all_users": log.n_users, "rows": rows,
                  "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(results_json(result))
        print(json.dumps(rows, indent=1))
    title = DATASET_TITLES.get(result["dataset"], result["dataset"])
    if result["users"] < result["all_users"]:
        title += f", {result['users']:,} users"
    write_section(args.output, f"## What the ID vectors rank with co-occurrence factors ({title}, no training)\n\n"
                  + render(result), marker="factor-check" + suffix.replace("_", "-"))


if __name__ == "__main__":
    main()
