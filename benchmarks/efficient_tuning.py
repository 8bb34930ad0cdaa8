"""Efficient tuning on MovieLens-100K with the default LLM: top-M prefix layers, the lower-layer cache,
and the tailored data selection. Writes docs/benchmarks.md.

    python benchmarks/efficient_tuning.py --data ../shared/data/ml-100k

Three parts, all with SmolLM2-135M-Instruct (30 layers, fp32, CPU), the
benchmark's SASRec as the CF stage (trained once and shared by every run, so
the runs differ only in the alignment stage), softmax + alignment loss,
batch 16:

- layers: prefix_layers in {all, 8, 4} with the lower-layer cache, trained on
  the same random samples; seconds per 1,000 samples, one-off setup seconds,
  validation and test NDCG@10;
- cache: the same top-8 and top-4 settings without the cache (timing only:
  a test checks that the cache does not change the result);
- fraction: validation/test NDCG@10 against sample_fraction, tailored vs
  random selection (top 8 layers, cached).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

from cf_quality import SETTINGS, write_section

import rarec._estimator as estimator_module
from rarec import RARecommender
from rarec.cf import TrainingConfig, make_backbone
from rarec.data import read_recbole
from rarec.model_selection import leave_last_out

RESULTS = Path(__file__).resolve().parent / "results" / "efficient_tuning.json"


def shared_backbone(train, seed: int):
    """SASRec fitted once on the split RARecommender makes internally (each user's last item for validation)."""
    config, training = SETTINGS["sasrec"]
    inner = leave_last_out(train, n_valid=0)
    backbone = make_backbone("sasrec", TrainingConfig(**{**training, "verbose": False}, random_state=seed,
                                                      device="cpu"), **config)
    start = time.perf_counter()
    backbone.fit(inner.train, inner.test)
    print(f"shared SASRec: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    # Benchmark-only shim: every RARecommender below gets a copy of this fitted backbone instead of training its own.
    # (fit() still calls backbone.fit; the copy's fit is replaced by a no-op.)
    backbone.fit = lambda *a, **k: backbone
    estimator_module.make_backbone = lambda *a, **k: copy.deepcopy(backbone)
    return backbone


def run(split, text, seed: int, **params) -> dict:
    rec = RARecommender(backbone="sasrec", device="cpu", random_state=seed, verbose=0, batch_size=16, **params)
    start = time.perf_counter()
    rec.fit(split.train, item_text=text)
    log = rec.training_log_
    seconds = sum(r["seconds"] for r in log)
    samples = sum(r["samples"] for r in log)
    row = {
        "params": params,
        "trainable": rec.n_trainable_parameters_,
        "samples": log[0]["samples"],
        "epochs": len(log),
        "s_per_1k": 1000 * seconds / samples,
        "setup_s": log[0].get("setup_seconds", 0.0),
        "fit_s": time.perf_counter() - start,
        "valid_ndcg@10": max(r.get("valid_ndcg@10", -1.0) for r in log),
        "test": rec.evaluate(split.test, ks=(10, 100), metrics=("hr", "ndcg")),
        "selection": rec.selection_report_,
    }
    print(json.dumps({k: row[k] for k in ("params", "s_per_1k", "setup_s", "valid_ndcg@10")}), file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ml-100k")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--samples", type=int, default=500, help="training samples of the layer comparison")
    parser.add_argument("--fractions", default="0.005,0.01")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs/benchmarks.md")
    args = parser.parse_args()

    log, text = read_recbole(args.data).k_core(5)
    split = leave_last_out(log, n_valid=0)
    shared_backbone(split.train, args.seed)
    common = dict(epochs=2, patience=1)
    layers = [run(split, text, args.seed, prefix_layers=m, max_train_samples=args.samples, **common)
              for m in ("all", 8, 4)]
    uncached = [run(split, text, args.seed, prefix_layers=m, max_train_samples=32, lower_cache_mb=0, epochs=1)
                for m in (8, 4)]
    fractions = [run(split, text, args.seed, prefix_layers=8, sample_fraction=f, selection=sel,
                     max_train_samples=None, epochs=1)
                 for f in map(float, args.fractions.split(",")) for sel in ("tailored", "random")]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"layers": layers, "uncached": uncached, "fractions": fractions}, indent=2,
                                  default=str) + "\n")
    write_section(args.output, to_markdown(layers, uncached, fractions, args), marker="efficient-tuning")
    print(f"wrote {args.output} and {RESULTS}", file=sys.stderr)


def to_markdown(layers, uncached, fractions, args) -> str:
    base = layers[0]["s_per_1k"]
    lines = ["## Efficient tuning: top-M prefix layers, the lower-layer cache, tailored data", "",
             "Reproduce: `python benchmarks/efficient_tuning.py --data ../shared/data/ml-100k` "
             f"(seed {args.seed}; SmolLM2-135M-Instruct fp32; {platform.machine()}, {torch.get_num_threads()} "
             f"threads, torch {torch.__version__}). One SASRec, trained once, is the CF stage of every row.", "",
             f"### Prefix layers ({args.samples} random training samples, up to 2 epochs, batch 16)", "",
             "| prefix_layers | lower-layer cache | trainable | s / 1,000 samples | speed-up vs all | one-off setup s "
             "| validation NDCG@10 | test NDCG@10 | test HR@100 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in layers:
        m = row["params"]["prefix_layers"]
        lines.append(f"| {m} | {'—' if m == 'all' else 'on'} | {row['trainable']:,} | {row['s_per_1k']:.0f} | "
                     f"{base / row['s_per_1k']:.1f}× | {row['setup_s']:.0f} | {row['valid_ndcg@10']:.4f} | "
                     f"{row['test']['ndcg@10']:.4f} | {row['test']['hr@100']:.4f} |")
    for row in uncached:
        m = row["params"]["prefix_layers"]
        lines.append(f"| {m} | off | {row['trainable']:,} | {row['s_per_1k']:.0f} | {base / row['s_per_1k']:.1f}× | "
                     f"{row['setup_s']:.0f} | (timing run: 32 samples) | | |")
    lines += ["", "### Data efficiency (top 8 layers, cached, 1 epoch): quality against sample_fraction", "",
              "| sample_fraction | selection | samples | removed by denoise | validation NDCG@10 | test NDCG@10 "
              "| test HR@100 |", "|---|---|---|---|---|---|---|"]
    for row in fractions:
        sel = row["selection"]
        lines.append(f"| {row['params']['sample_fraction']} | {row['params']['selection']} | {row['samples']:,} | "
                     f"{sel.get('removed_by_denoise', '—')} | {row['valid_ndcg@10']:.4f} | "
                     f"{row['test']['ndcg@10']:.4f} | {row['test']['hr@100']:.4f} |")
    return "\n".join(lines) + "\n\n"


if __name__ == "__main__":
    main()
