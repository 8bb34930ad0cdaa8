"""How good a teacher is SASRec + w x EASE? The fused ranking of the validation items, no training (issue #16).

The estimator's ``cooccurrence_teacher`` distils the SASRec backbone's logits plus ``w`` x EASE's score of the whole
history (``w`` in units of the backbone's score spread). A student cannot beat a teacher that ranks no better than
the backbone, so this script ranks the validation items with the fused scores directly, on the same split, users
and SASRec as ``objective_study.py``: every evaluated user's last training item held out, ranked against the
catalogue, the rest of their history excluded.

EASE is fitted either on the histories the estimator sees (``--ease-on subset``: with ``--users`` only the seeded
subset, as a CPU-preset fit does) or on every user's (``--ease-on all``), with the validation items held out of
both.

    python benchmarks/teacher_fusion.py                                    # ML-100K
    python benchmarks/teacher_fusion.py --data ../shared/data/amazon-beauty --users 4000 --ease-on subset,all
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import DATASET_TITLES, dataset_suffix, read_dataset, results_json, write_section
from objective_study import shared_sasrec, user_subset

from rarec.cf import EASE, history_matrix
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
#: Users whose score spreads set the EASE scale (the estimator's teacher uses up to 1,000 samples the same way).
N_PROBE = 1000


def spread(scores: torch.Tensor) -> float:
    """The mean over users of the std of their catalogue scores."""
    return float(scores.float().std(1).mean())


def fusion_rows(backbone, inner, ease_histories, l2_values, weights) -> list[dict]:
    """Validation NDCG@10 and HR@100 of SASRec + w x EASE (EASE fitted on ``ease_histories``) for each L2 and
    weight; weight ``None`` is EASE alone."""
    sasrec = backbone.scorer(inner.train)
    sequences = inner.train.user_sequences()
    users = np.unique(inner.test.user_codes)
    history = history_matrix(sequences, inner.train.n_items)
    probe = users[:N_PROBE]
    rows = []
    for l2 in l2_values:
        start = time.perf_counter()
        ease = EASE(l2).fit(ease_histories, inner.train.n_items)
        fit_s = time.perf_counter() - start
        unit = spread(torch.as_tensor(sasrec(probe))) / max(spread(ease.score(history[probe])), 1e-12)
        for weight in weights:
            def score(u, weight=weight):
                added = ease.score(history[np.asarray(u)])
                return added if weight is None else torch.as_tensor(sasrec(u)).float() + weight * unit * added
            found = full_ranking_metrics(score, inner.test, inner.train, ks=[10, 100], metrics=["ndcg", "hr"])
            rows.append({"l2": l2, "weight": weight, "ease_fit_s": fit_s, **found})
            print(rows[-1], file=sys.stderr)
    return rows


def render(result: dict) -> str:
    title = DATASET_TITLES.get(result["dataset"], result["dataset"])
    lines = [f"## Is SASRec + EASE a better teacher? ({title}, no training)", "",
             f"Written by `benchmarks/teacher_fusion.py` on {result['machine']}. The objective study's split, "
             f"{result['users']:,} evaluated users of {result['all_users']:,} and SASRec (seed 0): each user's last "
             "training item held out and ranked against the whole catalogue, the rest of the history excluded. "
             "Score: SASRec's plus w × EASE's (w in units of SASRec's score spread, as the estimator's "
             "`cooccurrence_teacher`). \"EASE on\": the histories EASE was fitted on (validation items held out).",
             "", "| EASE on | L2 | w | valid NDCG@10 | valid HR@100 | EASE fit (s) |", "|---|---|---|---|---|---|"]
    names = {"subset": "every user" if result["users"] == result["all_users"] else "the evaluated users",
             "all": "every user"}
    for fitted_on, rows in result["rows"].items():
        for r in rows:
            weight = "SASRec alone" if r["weight"] == 0 else "EASE alone" if r["weight"] is None else r["weight"]
            lines.append(f"| {names[fitted_on]} | {r['l2']:g} | {weight} | {r['ndcg@10']:.4f} | {r['hr@100']:.4f} | "
                         f"{r['ease_fit_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/ml-100k")
    parser.add_argument("--users", type=int, default=None, help="the objective study's seeded user subset")
    parser.add_argument("--ease-on", default="subset", help="comma list of: subset (the evaluated users), all")
    parser.add_argument("--l2", default="200", help="comma list of EASE's L2 (the estimator uses 200)")
    parser.add_argument("--weights", default="0,0.25,0.5,1", help="comma list of w; EASE alone is always added")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    saved = HERE / "results" / f"teacher_fusion{suffix}.json"
    if args.render:
        marker = "teacher-fusion" + suffix.replace("_", "-")
        return write_section(args.output, render(json.loads(saved.read_text())), marker=marker)
    log, _ = read_dataset(args.data)
    split = leave_last_out(log, n_valid=0)
    backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{suffix}")
    inner = leave_last_out(user_subset(split, args.users).train, n_valid=0)
    everyone = leave_last_out(split.train, n_valid=0).train.user_sequences()
    weights = [float(w) for w in args.weights.split(",")] + [None]
    l2_values = [float(v) for v in args.l2.split(",")]
    result = {"dataset": args.data.name, "users": len(np.unique(inner.test.user_codes)), "all_users": log.n_users,
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "rows": {}}
    for fitted_on in args.ease_on.split(","):
        histories = {"subset": inner.train.user_sequences(), "all": everyone}[fitted_on]
        result["rows"][fitted_on] = fusion_rows(backbone, inner, histories, l2_values, weights)
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(results_json(result))
    write_section(args.output, render(result), marker="teacher-fusion" + suffix.replace("_", "-"))


if __name__ == "__main__":
    main()
