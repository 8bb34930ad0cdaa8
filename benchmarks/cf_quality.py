"""CF backbones on MovieLens-100K or Amazon Beauty under the protocol of DESIGN §6; writes docs/benchmarks.md.

Protocol: implicit feedback, 5-core on users and items, stable timestamp
order, leave-one-out (last item test, second-to-last validation), full
ranking with every earlier item of the user excluded. Models early-stop on
validation NDCG@10; test rankings use the history up to the validation item.

    python benchmarks/cf_quality.py --data ../shared/data/ml-100k
    python benchmarks/cf_quality.py --data ../shared/data/amazon-beauty

Each data set has its own results file (cf_quality.json for ML-100K,
cf_quality_<folder>.json otherwise) and its own section of the docs page.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from rarec.cf import PopularityRecommender, TrainingConfig, make_backbone
from rarec.data import read_recbole
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

from common import SETTINGS, dataset_suffix, write_section  # noqa: E402

KS = (5, 10, 20, 100)
ORDER = ["pop", "bpr", "sasrec", "sasrec_full", "sasrec_sampled", "comirec"]
#: Extra rows that fix one SASRec setting whatever the default: the full softmax against a sampled one of 1,024
#: uniform negatives (issue #18: what the sampled softmax costs in quality on a real catalogue of 12,101 items).
VARIANTS = {"sasrec_full": ("sasrec", {"n_negatives": None}), "sasrec_sampled": ("sasrec", {"n_negatives": 1024})}
COLUMNS = ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "hr@100", "ndcg@100", "mrr@10"]

RECBOLE = """| RecBole 1.2.1 (reference, test) | HR@10 | NDCG@10 | HR@100 | NDCG@100 | MRR@10 | epochs (best) | wall time |
|---|---|---|---|---|---|---|---|
| Pop | 0.0838 | 0.0437 | 0.3213 | 0.0889 | 0.0316 | — | 1 s |
| BPR | 0.1326 | 0.0672 | 0.5408 | 0.1466 | 0.0476 | 119 (88) | 76 s |
| LightGCN | 0.1209 | 0.0634 | 0.5260 | 0.1415 | 0.0459 | 151 (120) | 411 s |
| SASRec | 0.1845 | 0.0985 | 0.6331 | 0.1873 | 0.0724 | 21 (10) | 68 min (≈185 s/epoch) |"""


# A published full-ranking figure for SASRec on the same 5-core Beauty sequences (leave-one-out, every item ranked).
# It is a third-party library's own run, not a paper's table; see the prose of docs/benchmarks.md.
BEAUTY_REFERENCE = """| Published SASRec run (genrec documentation, "Amazon 2014 Beauty", test) | HR@5 | HR@10 | NDCG@5 | NDCG@10 |
|---|---|---|---|---|
| SASRec (dim 64, 2 layers, 2 heads, dropout 0.2, max_len 50) | 0.0469 | 0.0688 | 0.0305 | 0.0375 |

Source: https://phonism.github.io/genrec/en/models/sasrec (\"Benchmark Results\"). Whether that run excludes each
user's earlier items from the ranking is not stated there; rarec's rows exclude them."""

#: folder name -> (title, what the outside reference is, its table)
DATASETS = {
    "ml-100k": ("MovieLens-100K",
                "Outside reference, same split and exclusion (from the CF issue; RecBole run separately, seed 2020):",
                RECBOLE),
    "amazon-beauty": ("Amazon Beauty", "Outside reference:", BEAUTY_REFERENCE),
}


def evaluate(scorer, held_out, seen):
    return full_ranking_metrics(scorer, held_out, seen, ks=KS, metrics=("hr", "ndcg", "mrr"))


def run(data: Path, models: list[str], seed: int, device: str) -> list[dict]:
    log = read_recbole(data).k_core(5).interactions
    split = leave_last_out(log)
    print(f"{data.name} 5-core: {log.n_users} users, {log.n_items} items, {len(log)} interactions", file=sys.stderr)
    rows = []
    for name in models:
        start = time.perf_counter()
        if name == "pop":
            valid = evaluate(PopularityRecommender().fit(split.train).score_users, split.valid, split.train)
            test = evaluate(PopularityRecommender().fit(split.before_test).score_users, split.test, split.before_test)
            epochs, best, per_epoch = "—", "—", None
        else:
            backbone, override = VARIANTS.get(name, (name, {}))
            config, training = SETTINGS[backbone]
            model = make_backbone(backbone, TrainingConfig(**training, random_state=seed, device=device),
                                  **{**config, **override})
            model.fit(split.train, split.valid)
            valid = evaluate(model.scorer(split.train), split.valid, split.train)
            test = evaluate(model.scorer(split.before_test), split.test, split.before_test)
            history = model.training_log_
            best_epoch = max(history, key=lambda r: r.get("valid_ndcg@10", -1))["epoch"]
            epochs, best = len(history), best_epoch
            per_epoch = sum(r["seconds"] for r in history) / len(history)
        wall = time.perf_counter() - start
        rows.append({"model": name, "valid": valid, "test": test, "epochs": epochs, "best": best,
                     "seconds": wall, "per_epoch": per_epoch,
                     "data": {"users": log.n_users, "items": log.n_items, "interactions": len(log)}})
        print(f"{name}: test NDCG@10 {test['ndcg@10']:.4f} HR@10 {test['hr@10']:.4f} ({wall:.0f} s)", file=sys.stderr)
    return rows


def to_markdown(rows: list[dict], command: str, seed: int, dataset: str = "ml-100k") -> str:
    # @5 as well where the published reference gives it; ML-100K's rows predate it
    columns = COLUMNS if dataset == "ml-100k" else ["hr@5", "ndcg@5", *COLUMNS]
    head = "| rarec (test) | " + " | ".join(c.upper() for c in columns)
    lines = [head + " | epochs (best) | wall time | s/epoch |", "|---" * (len(columns) + 4) + "|"]
    for r in rows:
        cells = [f"{r['test'][c]:.4f}" for c in columns]
        epochs = r["epochs"] if r["best"] == "—" else f"{r['epochs']} ({r['best']})"
        per_epoch = "—" if r["per_epoch"] is None else f"{r['per_epoch']:.2f}"
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {epochs} | {r['seconds']:.0f} s | {per_epoch} |")
    valid_lines = ["| rarec (validation) | " + " | ".join(c.upper() for c in columns) + " |",
                   "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        valid_lines.append(f"| {r['model']} | " + " | ".join(f"{r['valid'][c]:.4f}" for c in columns) + " |")
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    variants = [r["model"] for r in rows if r["model"] in VARIANTS]
    if variants:  # what each fixed-softmax row is, beside the default rows
        lines += ["", "; ".join(f"`{name}`: SASRec with `n_negatives={VARIANTS[name][1]['n_negatives']}`"
                                for name in variants)
                  + ". The default `n_negatives=\"auto\"` keeps the full softmax on this data (docs/cf.md)."]
    title, intro, reference = DATASETS.get(dataset, (dataset, None, None))
    size = rows[-1].get("data", {"users": 943, "items": 1349, "interactions": 99287})  # ML-100K rows predate "data"
    return "\n".join([
        f"## CF backbones on {title}",
        "",
        f"Reproduce: `{command}` (seed {seed}; {machine}).",
        f"Protocol: 5-core ({size['users']:,} users, {size['items']:,} items, {size['interactions']:,} interactions), "
        "stable timestamp order, leave-one-out, "
        "full ranking with every earlier item of the user excluded; early stopping on validation NDCG@10. "
        "Wall times are of the run that produced each row (other work on the machine slows them).",
        "",
        *lines,
        "",
        *valid_lines,
        "",
        *([intro, "", reference, ""] if reference else []),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ml-100k")
    parser.add_argument("--models", default="pop,bpr,sasrec,comirec")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs/benchmarks.md")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw figures of every model run so far (read, updated and written back; default "
                             "results/cf_quality.json for ML-100K, results/cf_quality_<data folder>.json otherwise)")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    if args.json is None:
        args.json = Path(__file__).resolve().parent / f"results/cf_quality{suffix}.json"
    rows = run(args.data, args.models.split(","), args.seed, args.device)
    # Rows of models not run this time are kept from the results file, so one model can be re-run alone.
    results = json.loads(args.json.read_text()) if args.json.exists() else []
    fresh = {r["model"] for r in rows}
    merged = [r for r in results if r["model"] not in fresh] + rows
    merged.sort(key=lambda r: ORDER.index(r["model"]) if r["model"] in ORDER else len(ORDER))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    command = f"python benchmarks/cf_quality.py --data ../shared/data/{args.data.name} [--models pop,bpr,sasrec,comirec]"
    write_section(args.output, to_markdown(merged, command, args.seed, args.data.name),
                  marker="cf-quality" + suffix.replace("_", "-"))
    print(f"wrote {args.output} and {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
