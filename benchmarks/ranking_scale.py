"""Full-catalogue ranking at scale from cached vectors: 100,000 users against 1,000,000 items.

    python benchmarks/ranking_scale.py                       # the issue's size, ~15 min on 2 CPU cores
    python benchmarks/ranking_scale.py --users 1000 --items 100000 --json /tmp/small.json   # a quick look
    python benchmarks/ranking_scale.py --render              # docs section from the saved JSON

What ``RARecommender.recommend`` does for known users, on random vectors of
SmolLM2-135M's width (576): scores in blocks of at most ``ranking_memory_mb``
(users x items, float32), each block's top k merged into the running top k,
every user's seen items excluded (20 random ones here). The dense score
matrix (100,000 x 1,000,000 float32 = 400 GB) is never built. Reports wall
time, users per second and the process's peak resident memory; the vectors
themselves take 2.3 GB (items) + 0.23 GB (users).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import write_section

from rarec._topk import chunk_sizes, top_k

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ranking_scale.json"


def measure(n_users: int, n_items: int, dim: int, k: int, memory_mb: float, seen: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    items = torch.randn(n_items, dim, generator=generator)
    users = torch.randn(n_users, dim, generator=generator)
    rng = np.random.default_rng(seed)
    exclude = [rng.choice(n_items, seen, replace=False) for _ in range(n_users)]
    baseline_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def block(rows, cols):  # what RARecommender._score_block computes for the LLM score
        return users[rows] @ items[cols].T

    start = time.perf_counter()
    values, indices = top_k(block, n_users, n_items, k, exclude, memory_mb)
    seconds = time.perf_counter() - start
    rows, cols = chunk_sizes(n_users, n_items, memory_mb)
    # spot check: the first users' lists equal a dense top-k of their own rows
    check = users[:8] @ items.T
    for row in range(8):
        check[row, torch.as_tensor(exclude[row])] = -torch.inf
    exact = bool(torch.equal(torch.topk(check, k).indices, indices[:8]))
    return {
        "users": n_users, "items": n_items, "dim": dim, "k": k, "ranking_memory_mb": memory_mb,
        "seen_per_user": seen, "block": [rows, cols], "seconds": seconds, "users_per_s": n_users / seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_before_ranking_gib": baseline_gib, "dense_matrix_gib": n_users * n_items * 4 / 2**30,
        "first_users_match_dense_top_k": exact,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }


def to_markdown(r: dict) -> str:
    return "\n".join([
        "## Ranking at scale: 100,000 users × 1,000,000 items from cached vectors", "",
        "Reproduce: `python benchmarks/ranking_scale.py` (then `--render`). Random fp32 vectors of width "
        f"{r['dim']} (SmolLM2-135M's hidden size), {r['seen_per_user']} seen items excluded per user, top {r['k']}; "
        f"{r['machine']}.", "",
        "| users | items | ranking_memory_mb | block (users × items) | wall time | users/s | peak RSS | "
        "RSS before ranking | dense score matrix (never built) | first 8 users = dense top-k |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {r['users']:,} | {r['items']:,} | {r['ranking_memory_mb']:g} | {r['block'][0]:,} × {r['block'][1]:,} | "
        f"{r['seconds'] / 60:.1f} min | {r['users_per_s']:,.0f} | {r['peak_rss_gib']:.2f} GiB | "
        f"{r['rss_before_ranking_gib']:.2f} GiB | {r['dense_matrix_gib']:,.0f} GiB | "
        f"{'yes' if r['first_users_match_dense_top_k'] else 'NO'} |", ""]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--memory-mb", type=float, default=1024, help="ranking_memory_mb (the estimator's default)")
    parser.add_argument("--seen", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if not args.render:
        result = measure(args.users, args.items, args.dim, args.k, args.memory_mb, args.seen, args.seed)
        print(json.dumps(result, indent=1), file=sys.stderr)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        if args.json != RESULTS:
            return
    write_section(args.output, to_markdown(json.loads(RESULTS.read_text())), marker="ranking-scale")


if __name__ == "__main__":
    main()
