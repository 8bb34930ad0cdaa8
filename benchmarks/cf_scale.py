"""How the CF stage scales: reading, one training epoch and one validation round on a 5-million-row log.

    python benchmarks/cf_scale.py                       # every part, 200,000 users x 25 items, 20,000 items
    python benchmarks/cf_scale.py --parts bpr,implicit  # some parts only
    python benchmarks/cf_scale.py --render              # docs section from the saved JSON

The log is synthetic and seeded: each user has ``--per-user`` interactions
drawn from a Zipf-like item popularity (exponent 0.8), in time order. It is
written once as a CSV under ``benchmarks/output/`` (about 114 MB).

Each part runs in its own child process, so its peak resident memory is its
own (``ru_maxrss``) and one part's caches never help the next:

- ``read``: ``rarec.data.read_csv`` of the file (what ``rarec fit`` does first);
- ``bpr`` / ``sasrec``: one training epoch of rarec's backbone with the
  settings of ``benchmarks/common.py`` (SASRec's softmax as its default
  ``n_negatives="auto"`` chooses: sampled at 20,000 items), without validation, on
  ``leave_last_out``'s training part; ``sasrec_sampled`` the same with
  ``SASRecConfig(n_negatives=1024)`` (a sampled softmax);
- ``validate``: one validation round of the fitted-for-one-epoch BPR, which
  ranks the full catalogue for every validation user (what early stopping
  does after each epoch);
- ``implicit``: ``implicit``'s CPU BPR (``pip install implicit``; skipped when
  it is not installed), one iteration, 64 factors, on the same training part.

Results: benchmarks/results/cf_scale.json, one entry per ``--label`` and part
(the label names the code measured, e.g. ``before`` and ``after`` a change).
Time only on a quiet machine: two torch processes on 2 cores slow each other
several-fold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "cf_scale.json"
PARTS = ("read", "bpr", "sasrec", "sasrec_sampled", "validate", "implicit")
#: negatives per batch of the ``sasrec_sampled`` part (``SASRecConfig(n_negatives=...)``)
SAMPLED_NEGATIVES = 1024


def write_log(path: Path, n_users: int, per_user: int, n_items: int, seed: int = 0) -> None:
    """A seeded synthetic log: ``per_user`` popularity-drawn items per user, timestamps in order."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    cdf = np.cumsum(weights / weights.sum())
    items = np.minimum(np.searchsorted(cdf, rng.random((n_users, per_user))), n_items - 1)
    items = rng.permutation(n_items)[items]  # popular items are not the low ids
    users = np.repeat(np.arange(n_users), per_user)
    stamps = 1_000_000_000 + np.arange(n_users * per_user)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        handle.write("user_id,item_id,timestamp\n")
        for start in range(0, len(users), 500_000):
            stop = start + 500_000
            block = np.stack([users[start:stop], items.reshape(-1)[start:stop], stamps[start:stop]], axis=1)
            np.savetxt(handle, block, fmt="%d", delimiter=",")


def split(path: Path):
    from rarec.data import read_csv
    from rarec.model_selection import leave_last_out

    log, _ = read_csv(path)
    return leave_last_out(log, n_valid=0)


def backbone(name: str, epochs: int = 1, **changes):
    from common import SETTINGS

    from rarec.cf import TrainingConfig, make_backbone

    config, training = SETTINGS[name]
    training = {**training, "epochs": epochs, "random_state": 0, "device": "cpu", "verbose": False}
    return make_backbone(name, TrainingConfig(**training), **config, **changes)


def child(part: str, path: Path) -> dict:
    """Run one part in this process; return its figures."""
    import torch

    start = time.perf_counter()
    if part == "read":
        from rarec.data import read_csv

        log, _ = read_csv(path)
        return {"seconds": time.perf_counter() - start, "rows": len(log), "users": log.n_users, "items": log.n_items}
    parts = split(path)
    out = {"train_rows": len(parts.train), "torch_threads": torch.get_num_threads()}
    if part in ("bpr", "sasrec"):
        model = backbone(part).fit(parts.train)
        if part == "sasrec":  # what the default n_negatives="auto" chose for this catalogue (None: full softmax)
            out["n_negatives"] = model.n_negatives_
        return {**out, "seconds": model.training_log_[0]["seconds"]}
    if part == "sasrec_sampled":
        model = backbone("sasrec", n_negatives=SAMPLED_NEGATIVES).fit(parts.train)
        return {**out, "seconds": model.training_log_[0]["seconds"], "n_negatives": SAMPLED_NEGATIVES}
    if part == "validate":
        from rarec.metrics import full_ranking_metrics

        model = backbone("bpr").fit(parts.train)
        start = time.perf_counter()
        full_ranking_metrics(model.scorer(parts.train), parts.test, parts.train, ks=[10], metrics=["ndcg"])
        return {**out, "seconds": time.perf_counter() - start, "valid_users": int(len(np.unique(parts.test.user_codes)))}
    if part == "implicit":
        try:
            from implicit.cpu.bpr import BayesianPersonalizedRanking
        except ImportError:
            return {"skipped": "implicit is not installed (pip install implicit)"}
        import implicit

        matrix = parts.train.to_csr().astype(np.float32)
        model = BayesianPersonalizedRanking(factors=64, iterations=1, random_state=0)
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        return {**out, "seconds": time.perf_counter() - start, "implicit": implicit.__version__}
    raise ValueError(part)


def render(result: dict) -> str:
    lines = ["## CF stage at scale (5 M interactions)", "",
             f"Written by `benchmarks/cf_scale.py` on {result.get('machine', '?')}: a seeded synthetic log of "
             f"{result.get('shape', '?')}. Seconds for one training epoch (no validation) on "
             "`leave_last_out`'s training part, one validation round (full-catalogue ranking of every validation "
             "user), and reading the CSV; peak resident memory of the process that ran the part. Each label "
             "names the code measured.", "",
             "| label | part | seconds | peak memory (GB) |", "|---|---|---|---|"]
    for label, parts in result.get("runs", {}).items():
        for part in PARTS:
            if part in parts:
                row = parts[part]
                if "skipped" in row:
                    lines.append(f"| {label} | {part} | skipped: {row['skipped']} | – |")
                else:
                    lines.append(f"| {label} | {part} | {row['seconds']:.1f} | {row['peak_rss_gb']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--label", default="current")
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--per-user", type=int, default=25)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    path = HERE / "output" / "cf_scale" / f"log_{args.users}x{args.per_user}_{args.items}.csv"
    if args.child:
        row = child(args.child, path)
        row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps(row))
        return
    from common import write_section

    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    if not args.render:
        if not path.exists():
            write_log(path, args.users, args.per_user, args.items)
        result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        result["shape"] = (f"{args.users:,} users x {args.per_user} interactions, {args.items:,} items "
                           f"({args.users * args.per_user / 1e6:g} M rows, {path.stat().st_size / 1e6:.0f} MB CSV)")
        for part in args.parts.split(","):
            done = subprocess.run([sys.executable, __file__, "--child", part, "--users", str(args.users),
                                   "--per-user", str(args.per_user), "--items", str(args.items)],
                                  capture_output=True, text=True, cwd=HERE)
            if done.returncode != 0:
                sys.exit(f"part {part} failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(part, row, file=sys.stderr)
            result["runs"].setdefault(args.label, {})[part] = row
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    write_section(args.output, render(result), marker="cf-scale")


if __name__ == "__main__":
    main()
