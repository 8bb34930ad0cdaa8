"""What one call of the co-occurrence teacher costs: EASE's scores of a batch of sample histories, computed as a
dense product over every item (the code before session 51) and as ``EASE.score`` computes them now (a sparse product
over the weight rows of the items the histories name).

    python benchmarks/teacher_cost.py --data ../shared/data/amazon-beauty

The teacher is called once per training step of the alignment module and once per step of the output heads, for the
batch's 16 histories and its candidates (the targets plus 64 random items; ``negatives="catalogue"``: every item).
The heads' steps run no LLM, so there the teacher is a larger share of a step. EASE is fitted as the estimator fits
it (its default L2, 200) on every user's training sequence; the histories are prefixes of those sequences, as
samples are. Both ways run in one process on the same draws, alternating, and their scores are checked to agree.

Results: benchmarks/results/teacher_cost_<data folder>.json (printed; the page quotes them).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import dataset_suffix, read_dataset, results_json
from step_cost import cpu_model

from rarec.cf import EASE, history_matrix
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
BATCH, RANDOM_EXTRAS = 16, 64


def dense_scores(ease: EASE, rows, candidates: np.ndarray | None) -> torch.Tensor:
    """EASE's scores as the code before session 51 computed them: the dense rows times the weights' columns."""
    weights = ease.weights_ if candidates is None else ease.weights_[:, torch.as_tensor(candidates)]
    return torch.as_tensor(rows.toarray()) @ weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/amazon-beauty")
    parser.add_argument("--calls", type=int, default=200, help="teacher calls timed per way and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    log, _ = read_dataset(args.data)
    sequences = leave_last_out(leave_last_out(log, n_valid=0).train, n_valid=0).train.user_sequences()
    start = time.perf_counter()
    ease = EASE().fit(sequences, log.n_items)
    fit_seconds = time.perf_counter() - start
    rng = np.random.default_rng(0)
    histories = history_matrix([s[:rng.integers(1, len(s) + 1)] for s in sequences if len(s)], log.n_items)
    result = {"dataset": args.data.name, "n_items": log.n_items, "histories": histories.shape[0],
              "mean_history": float(histories.getnnz(1).mean()), "ease_fit_seconds": fit_seconds,
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "cpu_model": cpu_model(), "calls": args.calls, "rounds": args.rounds}
    ways = {"dense": lambda rows, c: dense_scores(ease, rows, c), "sparse": lambda rows, c: ease.score(rows, c)}
    for label, extras in (("targets + 64 random", RANDOM_EXTRAS), ("whole catalogue", None)):
        draws = []
        for _ in range(args.calls):
            rows = rng.choice(histories.shape[0], BATCH, replace=False)
            candidates = None if extras is None else np.unique(np.concatenate(
                [rng.integers(0, log.n_items, BATCH), rng.integers(0, log.n_items, extras)]))
            draws.append((histories[rows], candidates))
        worst = max(float((ways["dense"](*d) - ways["sparse"](*d)).abs().max()) for d in draws[:20])
        seconds = {name: [] for name in ways}
        for round_ in range(args.rounds):
            for name in (list(ways) if round_ % 2 == 0 else list(ways)[::-1]):
                start = time.perf_counter()
                for d in draws:
                    ways[name](*d)
                seconds[name].append((time.perf_counter() - start) / len(draws))
        ms = {name: 1e3 * statistics.mean(values) for name, values in seconds.items()}
        result[label] = {"ms_per_call_dense": ms["dense"], "ms_per_call_sparse": ms["sparse"],
                         "sparse_over_dense": ms["sparse"] / ms["dense"], "max_abs_difference": worst}
        print(json.dumps({label: result[label]}), file=sys.stderr)
    path = HERE / "results" / f"teacher_cost{dataset_suffix(args.data)}.json"
    path.write_text(results_json(result))
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
