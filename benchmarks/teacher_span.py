"""Can the LLM's item vectors carry what the teacher knows? The teacher's ranking restricted to their span (issue #16).

    python benchmarks/teacher_span.py /tmp/models/MODEL                       # ML-100K
    python benchmarks/teacher_span.py /tmp/models/MODEL --data ../shared/data/amazon-beauty --users 4000 \\
        --ease-on all --l2 50

The student's score is a dot product of a user vector and an item vector. With history pooling, the part of the user
vector that reads the whole history is a linear map of the mean of the LLM's item vectors (before the heads) over
the history; so whatever co-occurrence score the student learns is ``h @ V @ W @ G.T``, with ``h`` the history's
multi-hot row, ``V`` the catalogue's LLM item vectors before the heads and ``G`` the item vectors the score uses.
The history side of that score lies in the column span of ``V``, and the item side in that of ``G``.

This script takes a saved RA-Rec model (``objective_study.py --keep-models``), and ranks the objective study's
validation items (each evaluated user's last training item, the rest of the history excluded) with the teacher
``SASRec + w x EASE`` (w in units of SASRec's score spread, as the estimator's ``cooccurrence_teacher``) and with
the same teacher restricted to those spans: EASE's weights ``B`` replaced by ``P_V B`` (history side), ``B P_G``
(item side), ``P_V B P_G`` (both), and SASRec's scores by their projection on the span of ``G``. ``P`` is the
orthogonal projector on a matrix's column span. A restricted teacher that ranks no better than SASRec is a ceiling
the student cannot pass whatever it is trained on. Rank-r truncations of ``B`` (its leading singular vectors)
separate the number of directions from their alignment.

No training; seconds on ML-100K, minutes on Amazon Beauty.
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
from teacher_fusion import N_PROBE, spread

from rarec import RARecommender
from rarec.cf import EASE, history_matrix
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent


def span_basis(vectors: torch.Tensor, tolerance: float = 1e-6) -> torch.Tensor:
    """An orthonormal basis (n_items, r) of the column span of ``vectors`` (n_items, d): its left singular vectors
    whose singular value is above ``tolerance`` times the largest."""
    left, values, _ = torch.linalg.svd(vectors.double(), full_matrices=False)
    return left[:, values > values[0] * tolerance].float()


def effective_rank(vectors: torch.Tensor) -> float:
    """exp of the entropy of the normalised singular values of the centred vectors (Roy and Vetterli 2007)."""
    values = torch.linalg.svdvals((vectors - vectors.mean(0)).double())
    p = values / values.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-300).log()).sum()))


def teacher_rows(sasrec, inner, ease: EASE, history_basis: torch.Tensor, item_basis: torch.Tensor, weight: float,
                 ranks: list[int]) -> list[dict]:
    """Validation NDCG@10 / HR@100 of SASRec, the fused teacher, the teacher with EASE's history side restricted
    to ``history_basis`` and its item side to ``item_basis`` (orthonormal bases (n_items, r)), and with EASE's
    weights truncated to each rank of ``ranks``."""
    users = np.unique(inner.test.user_codes)
    history = history_matrix(inner.train.user_sequences(), inner.train.n_items)
    probe = users[:N_PROBE]
    unit = spread(torch.as_tensor(sasrec(probe))) / max(spread(ease.score(history[probe])), 1e-12)

    def ranked(name: str, score) -> dict:
        found = full_ranking_metrics(score, inner.test, inner.train, ks=[10, 100], metrics=["ndcg", "hr"])
        row = {"row": name, "ndcg@10": found["ndcg@10"], "hr@100": found["hr@100"]}
        print(row, file=sys.stderr)
        return row

    def teacher(table: torch.Tensor | None, sasrec_basis: torch.Tensor | None = None):
        """SASRec's scores (their item side projected on ``sasrec_basis`` when given) + w x history @ ``table``
        (no EASE term when ``table`` is None)."""
        def score(u):
            base = torch.as_tensor(sasrec(u)).float()
            if sasrec_basis is not None:
                base = (base @ sasrec_basis) @ sasrec_basis.T
            if table is None:
                return base
            return base + weight * unit * (torch.as_tensor(history[np.asarray(u)].toarray()) @ table)
        return score

    b = ease.weights_
    left, right = history_basis, item_basis
    history_side = left @ (left.T @ b)
    both = (history_side @ right) @ right.T
    rows = [ranked("SASRec", teacher(None)),
            ranked(f"SASRec + {weight:g} x EASE (the teacher)", teacher(b)),
            ranked("EASE's history side restricted", teacher(history_side)),
            ranked("EASE's item side restricted", teacher((b @ right) @ right.T)),
            ranked("EASE's both sides restricted", teacher(both)),
            ranked("SASRec alone, its item side restricted", teacher(None, right)),
            ranked("SASRec's item side and EASE's both sides restricted", teacher(both, right))]
    if not ranks:
        return rows
    for r in ranks:  # the leading r singular directions, by randomized SVD (seconds, also for 12,000 items)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            u, values, v = torch.svd_lowrank(b, q=min(2 * r + 16, min(b.shape)), niter=8)
        truncated = (u[:, :r] * values[:r]) @ v[:, :r].T
        rows.append(ranked(f"EASE truncated to its leading {r} singular directions", teacher(truncated)))
    return rows


def render(result: dict) -> str:
    title = DATASET_TITLES.get(result["dataset"], result["dataset"])
    spaces = result["spaces"]
    lines = [f"## Can the towers' item vectors carry the teacher? ({title}, no training)", "",
             f"Written by `benchmarks/teacher_span.py` on {result['machine']} from the saved model "
             f"`{result['model']}`. "
             f"The objective study's split, {result['users']:,} evaluated users of {result['all_users']:,} and "
             f"SASRec (seed 0); EASE (L2 {result['l2']:g}) fitted on {result['ease_on']}, validation items held "
             f"out. History side: the span of the LLM's item vectors before the heads ({spaces['history']['dim']} "
             f"dimensions, rank {spaces['history']['rank']}, effective rank "
             f"{spaces['history']['effective_rank']:.0f}); "
             f"item side: the span of the item vectors the score uses ({spaces['item']['dim']} dimensions, rank "
             f"{spaces['item']['rank']}, effective rank {spaces['item']['effective_rank']:.0f}). Validation NDCG@10 "
             "and HR@100 of each teacher.", "",
             "| teacher | valid NDCG@10 | valid HR@100 |", "|---|---|---|"]
    lines += [f"| {r['row']} | {r['ndcg@10']:.4f} | {r['hr@100']:.4f} |" for r in result["rows"]]
    if result.get("student_valid_ndcg@10") is not None:
        lines.append(f"| the student: this model's LLM score (its fit's validation) | "
                     f"{result['student_valid_ndcg@10']:.4f} | – |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="a RA-Rec model with history pooling (objective_study.py "
                                                 "--keep-models)")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared/data/ml-100k")
    parser.add_argument("--users", type=int, default=None, help="the objective study's seeded user subset")
    parser.add_argument("--ease-on", choices=["subset", "all"], default="subset",
                        help="fit EASE on the evaluated users' histories or on every user's")
    parser.add_argument("--l2", type=float, default=200.0)
    parser.add_argument("--weight", type=float, default=0.25)
    parser.add_argument("--ranks", default="16,64", help="EASE truncations (the history span's effective rank is "
                                                         "added); none: skip them")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    saved = HERE / "results" / f"teacher_span{suffix}.json"
    marker = "teacher-span" + suffix.replace("_", "-")
    if args.render:
        return write_section(args.output, render(json.loads(saved.read_text())), marker=marker)
    if args.model is None:
        parser.error("give the saved model (or --render)")
    rec = RARecommender.load(args.model)
    if rec.towers_.item_basis is None:
        sys.exit(f"{args.model} was fitted without history pooling: its user head reads no item vectors")
    log, _ = read_dataset(args.data)
    split = leave_last_out(log, n_valid=0)
    backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{suffix}")
    inner = leave_last_out(user_subset(split, args.users).train, n_valid=0)
    histories = (inner.train if args.ease_on == "subset" else leave_last_out(split.train, n_valid=0).train)
    start = time.perf_counter()
    ease = EASE(args.l2).fit(histories.user_sequences(), inner.train.n_items)
    print(f"EASE: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    vectors = {"history": rec.towers_.item_basis.float(),
               "item": torch.as_tensor(np.asarray(rec.item_vectors_)).float().reshape(inner.train.n_items, -1)}
    bases = {side: span_basis(v) for side, v in vectors.items()}
    spaces = {side: {"dim": v.shape[1], "rank": bases[side].shape[1], "effective_rank": effective_rank(v)}
              for side, v in vectors.items()}
    ranks = [] if args.ranks == "none" else sorted({*map(int, args.ranks.split(",")),
                                                    round(spaces["history"]["effective_rank"])})
    rows = teacher_rows(backbone.scorer(inner.train), inner, ease, bases["history"], bases["item"], args.weight,
                        ranks)
    result = {"dataset": args.data.name, "users": len(np.unique(inner.test.user_codes)), "all_users": log.n_users,
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "model": args.model.name, "l2": args.l2, "ease_on": {"subset": "the evaluated users",
                                                                   "all": "every user"}[args.ease_on],
              "spaces": spaces, "rows": rows,
              "student_valid_ndcg@10": max((r.get("valid_ndcg@10", -1.0) for r in rec.training_log_), default=None)}
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(results_json(result))
    write_section(args.output, render(result), marker=marker)


if __name__ == "__main__":
    main()
