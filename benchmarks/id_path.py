"""Where does the ID signal go? What the ID prefix and the prompt's words each carry through the frozen LLM.

    python benchmarks/id_path.py             # ML-100K: one default fit and its re-encodings (~20 min, 2-core CPU)
    python benchmarks/id_path.py --render    # docs section from the saved JSON
    python benchmarks/id_path.py --data ../shared/data/amazon-beauty   # another data set: its own file and section

One default RA-Rec fit (seed 0) on the shared SASRec of ``objective_study.py``.
Then every user and item is encoded again with the same trained module and
frozen LLM, in two altered ways:

- *words only*: each one's own prompt, but the ID tokens made from the mean CF
  vector (of all users, of all items), so the prefix no longer tells one user
  or item from another;
- *ID only*: each one's own CF vector, but one prompt shared by every item
  (the item template around "an item without a description") and one shared
  by every user (the user template around the same words).

Rows: test NDCG@10 and HR@100 of each pair of towers (the whole catalogue
ranked, each user's training items excluded), beside SASRec and popularity;
and, for the item vectors, how much they vary across items in each case
(the trace of their covariance, as a share of the full towers').

Results: benchmarks/results/id_path.json (ML-100K) or id_path_<dataset folder>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from common import DATASET_TITLES, dataset_suffix, read_dataset, write_section
from objective_study import BASE, DEFAULT_OBJECTIVE, HERE, reference_rows, shared_sasrec

from rarec import RARecommender
from rarec.llm import NO_TEXT
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out



def spread(vectors: torch.Tensor) -> float:
    """Total variance across rows: the trace of the covariance."""
    v = vectors.double()
    return float(((v - v.mean(0)) ** 2).sum(1).mean())


def run(data: Path, seed: int) -> dict:
    log, text = read_dataset(data)
    split = leave_last_out(log, n_valid=0)
    backbone = shared_sasrec(split.train, HERE / "output" / f"objective_study_sasrec{dataset_suffix(data)}")
    rec = RARecommender(backbone=backbone, device="cpu", random_state=seed, verbose=0,
                        **{**BASE, **DEFAULT_OBJECTIVE})
    rec.fit(split.train, item_text=text)
    return {"dataset": data.name, "seed": seed, "machine": f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads", "reference": reference_rows(backbone, split),
            "estimator_test": rec.evaluate(split.test, ks=[10, 100], metrics=["ndcg", "hr"]),
            "rows": decompose(rec, split)}


def decompose(rec: RARecommender, split) -> list[dict]:
    """Test metrics and item spread of the full, words-only and ID-only towers of a fitted ``rec``."""
    towers = rec.towers_
    sequences = split.train.user_sequences()
    users = np.arange(split.train.n_users)
    windows = [towers.window(np.asarray(sequences[u])) for u in users]
    user_tokens = [towers.prompts.user_tokens(w) for w in windows]
    user_cf = towers.user_cf(windows, users)
    item_cf = towers.item_cf
    tokenize = towers.llm.tokenizer
    neutral_item = list(tokenize(towers.settings.item_template.format(item=NO_TEXT))["input_ids"])
    neutral_user = list(tokenize(towers.settings.user_template.format(history=NO_TEXT))["input_ids"])
    encode = towers.encode
    mean_user = user_cf.mean(0, keepdim=True).expand_as(user_cf).contiguous()
    mean_item = item_cf.mean(0, keepdim=True).expand_as(item_cf).contiguous()
    item_tokens = towers.item_tokens
    pairs = {
        "full towers (ID prefix and prompt)": (encode("user", user_cf, user_tokens),
                                               encode("item", item_cf, item_tokens)),
        "words only (every ID token from the mean CF vector)": (encode("user", mean_user, user_tokens),
                                                                 encode("item", mean_item, item_tokens)),
        "ID only (one shared prompt per tower)": (encode("user", user_cf, [neutral_user] * len(users)),
                                                  encode("item", item_cf, [neutral_item] * towers.n_items)),
    }
    full_spread = spread(pairs["full towers (ID prefix and prompt)"][1])
    rows = []
    for name, (user_vectors, item_vectors) in pairs.items():
        found = full_ranking_metrics(lambda u, U=user_vectors, I=item_vectors: U[u] @ I.T, split.test, split.train,
                                     ks=[10, 100], metrics=["ndcg", "hr"])
        rows.append({"row": name, **found, "item_spread_share": spread(item_vectors) / full_spread})
    return rows


def render(result: dict) -> str:
    dataset = result.get("dataset", "ml-100k")
    lines = [f"## Where the ID signal goes ({DATASET_TITLES.get(dataset, dataset)}, SmolLM2-135M, CPU)", "",
             f"Written by `benchmarks/id_path.py` on {result['machine']}. One default RA-Rec fit (seed "
             f"{result['seed']}) on the objective study's SASRec; its users and items encoded again with the ID "
             "tokens made from the mean CF vector (words only) or with one shared prompt per tower (ID only). "
             "Test split, whole catalogue ranked. Item spread: the item vectors' total variance across items, as "
             "a share of the full towers'.", "",
             "| towers | test NDCG@10 | test HR@100 | item spread |", "|---|---|---|---|"]
    for label, m in result["reference"].items():
        lines.append(f"| {label} | {m['ndcg@10']:.4f} | {m['hr@100']:.4f} | – |")
    for r in result["rows"]:
        lines.append(f"| RA-Rec, {r['row']} | {r['ndcg@10']:.4f} | {r['hr@100']:.4f} | "
                     f"{r['item_spread_share']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    results = HERE / "results" / f"id_path{suffix}.json"
    if not args.render:
        result = run(args.data, args.seed)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["rows"], indent=1))
    write_section(args.output, render(json.loads(results.read_text())), marker="id-path" + suffix.replace("_", "-"))


if __name__ == "__main__":
    main()
