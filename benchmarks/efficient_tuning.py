"""Efficient tuning on MovieLens-100K with the default LLM: top-M prefix layers, the lower-layer cache,
and the tailored data selection. Writes docs/benchmarks.md.

    python benchmarks/efficient_tuning.py --data ../shared/data/ml-100k
    python benchmarks/efficient_tuning.py --parts fractions --fractions 0.02,0.05 --tailored-only 0.1

The second form reruns only the given fractions; every other row keeps its saved result
(benchmarks/results/efficient_tuning.json). ``--render`` rewrites the docs section from that file.

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
import json
import platform
import sys
import time
from pathlib import Path

import torch

from common import SETTINGS, write_section

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
    return backbone  # every RARecommender below is given it (backbone=...) instead of training its own


SHARED: dict = {}


def run(split, text, seed: int, save_dir: Path | None = None, **params) -> dict:
    rec = RARecommender(backbone=SHARED["sasrec"], device="cpu", random_state=seed, verbose=0, batch_size=16, **params)
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
    if params.get("score_fusion") == "auto":  # also the paper's score (LLM only) on the same fitted model
        by_weight = log[0]["valid_ndcg@10_by_fusion_weight"]
        row["fusion"] = {"weight": rec.score_fusion_, "valid_by_weight": by_weight}
        chosen, rec.score_fusion_ = rec.score_fusion_, 0.0
        row["valid_ndcg@10"] = by_weight[0.0] if 0.0 in by_weight else by_weight["0.0"]
        row["test_fused"], row["test"] = row["test"], rec.evaluate(split.test, ks=(10, 100), metrics=("hr", "ndcg"))
        rec.score_fusion_ = chosen
    if save_dir is not None:  # kept for later analysis without refitting
        row["saved"] = str(rec.save(save_dir / "_".join(f"{k}-{v}" for k, v in sorted(params.items()))))
    print(json.dumps({k: row[k] for k in ("params", "s_per_1k", "setup_s", "valid_ndcg@10")}), file=sys.stderr)
    return row


def _key(row: dict) -> tuple:
    return row["params"]["sample_fraction"], row["params"]["selection"] != "tailored"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ml-100k")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--samples", type=int, default=500, help="training samples of the layer comparison")
    parser.add_argument("--fractions", default="0.005,0.01,0.02,0.05", help="fractions run with both selections")
    parser.add_argument("--tailored-only", default="0.1",
                        help="fractions run with tailored selection only (random too costly here)")
    parser.add_argument("--parts", default="layers,cache,fractions",
                        help="which parts to run; the others keep their saved results")
    parser.add_argument("--save-models", type=Path, default=None, metavar="DIR",
                        help="save every fitted model of the fraction part under DIR")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from the saved JSON")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if args.render:
        results = json.loads(RESULTS.read_text())
        write_section(args.output, to_markdown(results["layers"], results["uncached"], results["fractions"], args),
                      marker="efficient-tuning")
        return

    log, text = read_recbole(args.data).k_core(5)
    split = leave_last_out(log, n_valid=0)
    SHARED["sasrec"] = shared_backbone(split.train, args.seed)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if "layers" in parts:
        results["layers"] = [run(split, text, args.seed, prefix_layers=m, max_train_samples=args.samples, epochs=2,
                                 patience=1) for m in ("all", 8, 4)]
    if "cache" in parts:
        results["uncached"] = [run(split, text, args.seed, prefix_layers=m, max_train_samples=32, lower_cache_mb=0,
                                   epochs=1) for m in (8, 4)]
    if "fractions" in parts:
        grid = [(float(f), sel) for f in args.fractions.split(",") for sel in ("tailored", "random")]
        grid += [(float(f), "tailored") for f in args.tailored_only.split(",") if f]
        rows = {_key(r): r for r in results.get("fractions", [])}  # rows of other fractions are kept
        for fraction, selection in grid:
            row = run(split, text, args.seed, args.save_models, prefix_layers=8, sample_fraction=fraction,
                      selection=selection, max_train_samples=None, epochs=1, score_fusion="auto")
            rows[_key(row)] = row
            results["fractions"] = [rows[k] for k in sorted(rows)]
            RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")  # partial results survive
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    layers, uncached, fractions = results["layers"], results["uncached"], results["fractions"]
    write_section(args.output, to_markdown(layers, uncached, fractions, args), marker="efficient-tuning")
    print(f"wrote {args.output} and {RESULTS}", file=sys.stderr)


def plot_fractions(fractions: list[dict], path: Path) -> bool:
    """Test NDCG@10 against sample_fraction, tailored vs random (PNG); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot written", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for selection, marker in (("tailored", "o"), ("random", "s")):
        rows = sorted((r["params"]["sample_fraction"], r["test"]["ndcg@10"]) for r in fractions
                      if r["params"]["selection"] == selection)
        if rows:
            ax.plot(*zip(*rows), marker=marker, label=f"{selection} selection")
    ax.set_xscale("log")
    ax.set_xlabel("sample_fraction (share of all training samples)")
    ax.set_ylabel("test NDCG@10 (LLM score)")
    ax.set_title("Data efficiency on ML-100K (top 8 layers, 1 epoch)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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
              "Test columns rank by the LLM score alone (the paper). Rows with a fused column were fitted with "
              "`score_fusion=\"auto\"`: the fused column is the same model ranked by the LLM score plus the "
              "CF score at the weight chosen on validation.", "",
              "| sample_fraction | selection | samples | removed by denoise | validation NDCG@10 | test NDCG@10 "
              "| test HR@100 | fused test NDCG@10 (weight) | fused test HR@100 |", "|---|---|---|---|---|---|---|---|---|"]
    picture = args.output.parent / "img" / "data_efficiency.png"
    if plot_fractions(fractions, picture):
        lines[-2:-2] = [f"![test NDCG@10 against sample_fraction](img/{picture.name})", ""]
    for row in fractions:
        sel = row["selection"]
        fused = row.get("test_fused")
        fused_cells = (f"{fused['ndcg@10']:.4f} ({row['fusion']['weight']:g}) | {fused['hr@100']:.4f}" if fused
                       else "— | —")
        lines.append(f"| {row['params']['sample_fraction']} | {row['params']['selection']} | {row['samples']:,} | "
                     f"{sel.get('removed_by_denoise', '—')} | {row['valid_ndcg@10']:.4f} | "
                     f"{row['test']['ndcg@10']:.4f} | {row['test']['hr@100']:.4f} | {fused_cells} |")
    return "\n".join(lines) + "\n\n"


if __name__ == "__main__":
    main()
