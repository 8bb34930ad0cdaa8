"""Does alignment beat its own ID backbone? RA-Rec vs its CF backbone, a text-only LLM and the ablations.

    python benchmarks/alignment_quality.py --data ../shared/data/ml-100k              # CPU preset
    python benchmarks/alignment_quality.py --preset gpu --device cuda --llm-dtype float32
    python benchmarks/alignment_quality.py --render        # docs section + plot from saved JSON

Protocol (DESIGN §6): ML-100K 5-core, leave-one-out. RARecommender is
fitted on everything but each user's last item and holds out the
second-to-last for its own validation (early stopping), as it does by
default. Every row is scored on the same validation items (users described
by their history before them) and test items (history up to and including
the validation item), ranking the whole catalogue minus the user's earlier
items.

Backbone rows are the very CF model inside the RA-Rec fit (one per
backbone and CF seed), so "RA-Rec vs its own backbone" compares the same
embeddings with and without the LLM. Each CF backbone is trained once per
seed and shared by the RA-Rec, text-only and ablation fits on it.

Besides the paper's score (LLM only), each RA-Rec fit is also ranked by the
LLM score fused with its backbone's score (``score_fusion``), the weight
picked on validation from a grid wider than the estimator's "auto" one, to
show where the trend goes.

Results: benchmarks/results/alignment_quality_<tag>.json (one per preset and
device; rows are written as they finish, so a stopped run keeps its rows).
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

from common import SETTINGS, write_section

from rarec import RARecommender
from rarec._scoring import FUSION_WEIGHTS, fuse
from rarec.cf import PopularityRecommender, TrainingConfig, make_backbone
from rarec.data import read_recbole
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
KS, METRICS = (10, 20, 100), ("hr", "ndcg", "mrr")
COLUMNS = ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "hr@100", "ndcg@100", "mrr@10"]
FUSION_GRID = FUSION_WEIGHTS  # the grid of score_fusion="auto"

#: Alignment budget per preset: the CPU one finishes the whole run_all within an hour on 2 cores.
PRESETS = {
    # One CF model per backbone (seed 0): the seeds vary the alignment stage, so every RA-Rec fit is paired with the
    # same backbone (three CF seeds would also cost 32 of the CPU preset's 60 minutes).
    "cpu": dict(sample_fraction=0.01, epochs=1, seeds=(0, 1, 2), cf_seed=0),
    "gpu": dict(sample_fraction=0.05, epochs=3, seeds=(0, 1, 2), cf_seed=0),
}

#: (label, backbone, RARecommender parameters, every seed?) in the order they run.
ROWS = [
    ("RA-Rec on SASRec", "sasrec", {}, True),
    ("text-only LLM (no ID prefix)", "sasrec", {"use_id": False}, False),
    ("ablation: one shared map (no per-layer reparameterization)", "sasrec", {"reparameterization": "shared"}, False),
    ("ablation: no contextual instructions (n_ctx=0)", "sasrec", {"n_ctx": 0}, False),
    ("ablation: no alignment loss (align_weight=0)", "sasrec", {"align_weight": 0.0}, False),
    ("RA-Rec on ComiRec", "comirec", {}, True),
    ("RA-Rec on BPR", "bpr", {}, True),
]
#: Attempts to lift RA-Rec above its backbone (issue #7), each one change from the default.
ATTEMPTS = [
    ("attempt: batch 64 (4x the in-batch negatives)", "sasrec", {"batch_size": 64}, False),
    ("attempt: lr 3e-3", "sasrec", {"lr": 3e-3}, False),
    ("attempt: prefixes in every layer", "sasrec", {"prefix_layers": "all"}, False),
    ("attempt: 4 ID tokens per vector", "sasrec", {"n_id_tokens": 4}, False),
    # Removed options, measured in earlier runs (their rows stay in the saved JSON and the docs):
    # "trainable output projection (output_head=True)", "residual training on the CF score (cf_residual=1, 4)".
]


class SharedBackbones:
    """One fitted CF backbone per (name, seed), handed to every RARecommender fit on it.

    Benchmark-only shim: RARecommender builds its backbone with ``make_backbone``;
    here that returns a copy of the already fitted model whose ``fit`` does nothing.
    """

    def __init__(self, inner_train, inner_valid, device: str, max_epochs: int | None = None):
        self.inner_train, self.inner_valid, self.device = inner_train, inner_valid, device
        self.max_epochs = max_epochs
        self.fitted: dict[tuple[str, int], object] = {}
        self.seconds: dict[tuple[str, int], float] = {}
        self._make = make_backbone

    def get(self, name: str, seed: int):
        if (name, seed) not in self.fitted:
            config, training = SETTINGS[name]
            if self.max_epochs:
                training = {**training, "epochs": self.max_epochs}
            model = self._make(name, TrainingConfig(**training, random_state=seed, device=self.device, verbose=False),
                               **config)
            start = time.perf_counter()
            model.fit(self.inner_train, self.inner_valid)
            self.seconds[(name, seed)] = time.perf_counter() - start
            print(f"{name} seed {seed}: {self.seconds[(name, seed)]:.0f} s", file=sys.stderr)
            self.fitted[(name, seed)] = model
        return self.fitted[(name, seed)]


def metrics_of(scores, held_out, seen) -> dict[str, float]:
    return full_ranking_metrics(scores, held_out, seen, ks=KS, metrics=METRICS)


def dense(scorer, n_users: int) -> torch.Tensor:
    return torch.cat([torch.from_numpy(np.array(scorer(np.arange(s, min(s + 256, n_users))), dtype=np.float32))
                      for s in range(0, n_users, 256)])


def llm_scores(rec: RARecommender, sequences: list[np.ndarray]) -> torch.Tensor:
    """The paper's score (LLM only) of every user described by ``sequences`` (item codes), all items."""
    fusion, rec.score_fusion_ = rec.score_fusion_, 0.0
    histories = [rec.items_.decode(s).tolist() for s in sequences]
    ids, values = rec.recommend(histories=histories, k=rec.n_items_, exclude_seen=False)
    rec.score_fusion_ = fusion
    out = torch.empty(len(sequences), rec.n_items_)
    columns = torch.as_tensor(rec.items_.encode(ids.reshape(-1).tolist()).reshape(ids.shape))
    out.scatter_(1, columns, torch.as_tensor(values, dtype=torch.float32))
    return out


def evaluate_fit(rec, backbone, split, inner) -> dict:
    """Validation and test metrics of the LLM score, the backbone's score and their fusion."""
    n = rec.n_users_
    valid_llm = llm_scores(rec, inner.train.user_sequences())
    test_llm = rec.user_vectors_ @ rec.item_vectors_.T  # users described by their whole fit history
    valid_cf = dense(backbone.scorer(inner.train), n)
    test_cf = dense(backbone.scorer(split.train), n)
    valid_fused = {w: metrics_of(fuse(valid_llm, valid_cf, w), inner.test, inner.train)["ndcg@10"]
                   for w in FUSION_GRID}
    weight = max(valid_fused, key=valid_fused.get)
    return {
        "valid": metrics_of(valid_llm, inner.test, inner.train),
        "test": metrics_of(test_llm, split.test, split.train),
        "backbone_valid": metrics_of(valid_cf, inner.test, inner.train),
        "backbone_test": metrics_of(test_cf, split.test, split.train),
        "fusion": {"weight": weight, "valid_ndcg@10_by_weight": valid_fused,
                   "test": metrics_of(fuse(test_llm, test_cf, weight), split.test, split.train)},
    }


def run(args) -> dict:
    preset = dict(PRESETS[args.preset])
    if args.sample_fraction is not None:
        preset["sample_fraction"] = args.sample_fraction
    if args.epochs is not None:
        preset["epochs"] = args.epochs
    seeds = preset.pop("seeds")[: args.n_seeds]
    cf_seed = preset.pop("cf_seed")
    log, text = read_recbole(args.data).k_core(5)
    split = leave_last_out(log, n_valid=0)  # train: all but each user's last item; test: the last item
    inner = leave_last_out(split.train, n_valid=0)  # what RARecommender holds out for validation
    backbones = SharedBackbones(inner.train, inner.test, args.device, args.cf_epochs)
    llm = None if args.llm is None else str(args.llm)
    rows_wanted = ROWS + (ATTEMPTS if args.attempts else [])
    if args.rows:  # in the order asked for
        rows_wanted = [r for key in args.rows.split(",") for r in rows_wanted if key in r[0]]
    result = {"preset": args.preset, "alignment": preset, "seeds": list(seeds), "cf_seed": cf_seed,
              "device": describe_device(args.device),
              "llm_dtype": args.llm_dtype, "rows": [], "backbones": {}, "popularity": None}
    pop = PopularityRecommender()
    result["popularity"] = {
        "valid": metrics_of(dense(pop.fit(inner.train).score_users, log.n_users), inner.test, inner.train),
        "test": metrics_of(dense(pop.fit(split.train).score_users, log.n_users), split.test, split.train),
    }
    started = time.perf_counter()
    for label, name, params, every_seed in rows_wanted:
        for seed in (seeds if every_seed else seeds[:1]):
            cf_key = (name, seed if cf_seed is None else cf_seed)
            backbone = backbones.get(*cf_key)
            rec = RARecommender(backbone=backbone, llm=llm, device=args.device, llm_dtype=args.llm_dtype,
                                random_state=seed, verbose=0, **{**preset, **params})
            start = time.perf_counter()
            rec.fit(split.train, item_text=text)
            assert list(rec.items_.ids) == list(log.items.ids) and list(rec.users_.ids) == list(log.users.ids)
            fit_s = time.perf_counter() - start
            row = {"label": label, "backbone": name, "params": params, "seed": seed, "fit_s": fit_s,
                   "cf_s": backbones.seconds[cf_key], "trainable": rec.n_trainable_parameters_,
                   "llm_parameters": rec.n_llm_parameters_, "samples": rec.training_log_[0]["samples"],
                   "epochs_run": len(rec.training_log_),
                   "s_per_1k": 1000 * sum(r["seconds"] for r in rec.training_log_)
                   / sum(r["samples"] for r in rec.training_log_),
                   "setup_s": rec.training_log_[0].get("setup_seconds", 0.0),
                   **evaluate_fit(rec, backbone, split, inner)}
            result["backbones"]["/".join(map(str, cf_key))] = {
                "valid": row["backbone_valid"], "test": row["backbone_test"], "seconds": row["cf_s"]}
            result["rows"].append(row)
            result["elapsed_s"] = time.perf_counter() - started
            save(result, args.json)  # a stopped run keeps the rows it finished
            print(f"{label} seed {seed}: test NDCG@10 {row['test']['ndcg@10']:.4f} HR@100 {row['test']['hr@100']:.4f}"
                  f" | backbone {row['backbone_test']['ndcg@10']:.4f} {row['backbone_test']['hr@100']:.4f}"
                  f" | fused (w={row['fusion']['weight']:g}) {row['fusion']['test']['ndcg@10']:.4f}"
                  f" ({fit_s:.0f} s)", file=sys.stderr)
    return result


def describe_device(device: str) -> str:
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return torch.cuda.get_device_name(0)
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")


# ------------------------------------------------------------------ report
def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def grouped(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["label"], []).append(row)
    return groups


def summary(result: dict) -> list[tuple[str, str, dict[str, list[float]]]]:
    """(label, kind, metric -> values over seeds) for every table row, backbones first."""
    out = [("popularity", "baseline", {c: [result["popularity"][part][c] for part in ("test",)] for c in COLUMNS}),]
    by_name: dict[str, list[dict]] = {}
    for key, value in result["backbones"].items():
        by_name.setdefault(key.split("/")[0], []).append(value)
    for name in ("bpr", "sasrec", "comirec"):
        if name in by_name:
            out.append((f"{name} (the backbone alone)", "backbone",
                        {c: [v["test"][c] for v in by_name[name]] for c in COLUMNS}))
    for label, rows in grouped(result["rows"]).items():
        out.append((label, "rarec", {c: [r["test"][c] for r in rows] for c in COLUMNS}))
    for label, rows in grouped(result["rows"]).items():
        if label.startswith("RA-Rec on") or rows[0]["params"].get("cf_residual"):  # residual: meant to be fused
            out.append((f"{label} + its backbone's score (fused)", "fused",
                        {c: [r["fusion"]["test"][c] for r in rows] for c in COLUMNS}))
    return out


def verdicts(result: dict) -> list[str]:
    """Plain sentences: does each RA-Rec row beat its own backbone by 10% (NDCG@10 and HR@100)?"""
    lines = []
    for label, rows in grouped(result["rows"]).items():
        if not label.startswith("RA-Rec on"):
            continue
        for score, key in (("LLM score alone (the paper)", "test"), ("fused with the backbone's score", "fusion")):
            ours = {m: statistics.mean((r[key] if key == "test" else r["fusion"]["test"])[m] for r in rows)
                    for m in ("ndcg@10", "hr@100")}
            base = {m: statistics.mean(r["backbone_test"][m] for r in rows) for m in ("ndcg@10", "hr@100")}
            rel = {m: ours[m] / base[m] - 1 for m in ours}
            won = all(v >= 0.10 for v in rel.values())
            lines.append(f"- **{label}, {score}: {'meets' if won else 'misses'} the +10% target.** NDCG@10 "
                         f"{ours['ndcg@10']:.4f} vs {base['ndcg@10']:.4f} ({rel['ndcg@10']:+.1%}), HR@100 "
                         f"{ours['hr@100']:.4f} vs {base['hr@100']:.4f} ({rel['hr@100']:+.1%}).")
    return lines


def to_markdown(result: dict, tag: str) -> str:
    a = result["alignment"]
    cf = ("one CF model per backbone (seed 0) under every alignment seed" if result.get("cf_seed") is not None
          else "CF and alignment seed")
    lines = [f"### {result['device']}: {result['preset']} preset, sample_fraction={a['sample_fraction']}, "
             f"epochs={a['epochs']}, llm_dtype={result['llm_dtype']} (results/alignment_quality_{tag}.json)", "",
             f"Seeds {', '.join(map(str, result['seeds']))} for the rows marked ×{len(result['seeds'])} ({cf}; "
             f"mean ± std), the first seed for the others. {len(result['rows'])} fits in this file (a stopped run keeps "
             f"the rows it finished); their run time: {result.get('elapsed_s', 0) / 60:.1f} min.", "",
             "| test | seeds | " + " | ".join(c.upper() for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for label, _, values in summary(result):
        n = len(values[COLUMNS[0]])
        lines.append(f"| {label} | {'×' + str(n) if n > 1 else 1} | "
                     + " | ".join(mean_std(values[c]) for c in COLUMNS) + " |")
    lines += ["", "| validation NDCG@10 / HR@100 | LLM score | backbone | fused (weights chosen) | trainable | samples "
              "| s / 1k samples | fit s |", "|---|---|---|---|---|---|---|---|"]
    for label, rows in grouped(result["rows"]).items():
        weights = ",".join(f"{r['fusion']['weight']:g}" for r in rows)
        fused_valid = statistics.mean(r["fusion"]["valid_ndcg@10_by_weight"][str(r["fusion"]["weight"])]
                                      if str(r["fusion"]["weight"]) in r["fusion"]["valid_ndcg@10_by_weight"]
                                      else r["fusion"]["valid_ndcg@10_by_weight"][r["fusion"]["weight"]] for r in rows)
        lines.append(f"| {label} | {mean_std([r['valid']['ndcg@10'] for r in rows])} / "
                     f"{mean_std([r['valid']['hr@100'] for r in rows])} | "
                     f"{mean_std([r['backbone_valid']['ndcg@10'] for r in rows])} / "
                     f"{mean_std([r['backbone_valid']['hr@100'] for r in rows])} | {fused_valid:.4f} ({weights}) | "
                     f"{rows[0]['trainable']:,} ({rows[0]['trainable'] / rows[0]['llm_parameters']:.2%}) | "
                     f"{rows[0]['samples']:,} | {statistics.mean(r['s_per_1k'] for r in rows):.1f} | "
                     f"{statistics.mean(r['fit_s'] for r in rows):.0f} |")
    lines += ["", *verdicts(result), ""]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict], path: Path) -> bool:
    """Bar chart of test NDCG@10 and HR@100 per row (mean ± std); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot written", file=sys.stderr)
        return False
    fig, axes = plt.subplots(len(results), 2, figsize=(15, 0.45 * 14 * len(results) + 1), squeeze=False,
                             gridspec_kw={"left": 0.3})
    colours = {"baseline": "#999999", "backbone": "#4c72b0", "rarec": "#dd8452", "fused": "#55a868"}
    for row_axes, (tag, result) in zip(axes, results.items()):
        rows = summary(result)
        for ax, metric in zip(row_axes, ("ndcg@10", "hr@100")):
            labels = [r[0] for r in rows]
            means = [statistics.mean(r[2][metric]) for r in rows]
            errors = [statistics.stdev(r[2][metric]) if len(r[2][metric]) > 1 else 0.0 for r in rows]
            ax.barh(range(len(rows)), means, xerr=errors, color=[colours[r[1]] for r in rows])
            ax.set_yticks(range(len(rows)), labels if metric == "ndcg@10" else [""] * len(rows), fontsize=7)
            ax.invert_yaxis()
            ax.set_title(f"{tag}: test {metric.upper()}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render(paths: list[Path], output: Path) -> None:
    results = {p.stem.removeprefix("alignment_quality_"): json.loads(p.read_text()) for p in paths if p.exists()}
    if not results:
        raise SystemExit("no alignment_quality_*.json results to render")
    picture = output.parent / "img" / "alignment_quality.png"
    drawn = plot(results, picture)
    lines = ["## Does alignment beat its own backbone? (MovieLens-100K, SmolLM2-135M-Instruct)", "",
             "Reproduce: `python benchmarks/alignment_quality.py --data ../shared/data/ml-100k` (CPU preset; "
             "`--preset gpu --device cuda --llm-dtype float32` for the GPU rows), then "
             "`python benchmarks/alignment_quality.py --render`. The backbone rows are the CF model inside the "
             "RA-Rec fits (same embeddings, without the LLM); \"fused\" ranks by the LLM score plus the backbone's "
             "score, the weight chosen on validation from "
             f"{', '.join(f'{w:g}' for w in FUSION_GRID)}. Test: the last item; validation: the one before.", ""]
    if drawn:
        lines += [f"![test NDCG@10 and HR@100 per row](img/{picture.name})", ""]
    for tag, result in results.items():
        lines.append(to_markdown(result, tag))
    write_section(output, "\n".join(lines), marker="alignment-quality")
    print(f"wrote {output}" + (f" and {picture}" if drawn else ""), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--sample-fraction", type=float, default=None, help="overrides the preset's")
    parser.add_argument("--epochs", type=int, default=None, help="overrides the preset's")
    parser.add_argument("--n-seeds", type=int, default=3)
    parser.add_argument("--rows", default="", help="comma-separated substrings of the row labels to run (default all)")
    parser.add_argument("--attempts", action="store_true", help="also run the improvement attempts")
    parser.add_argument("--cf-epochs", type=int, default=None, help="cap on CF epochs (smoke runs only)")
    parser.add_argument("--llm", type=Path, default=None, help="LLM folder or .gguf (default: SmolLM2-135M)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--llm-dtype", default="float32")
    parser.add_argument("--tag", default=None, help="result file name part (default: the preset)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", nargs="*", type=Path, default=None, metavar="JSON",
                        help="only rewrite the docs section (default: every results/alignment_quality_*.json)")
    args = parser.parse_args()
    if args.render is not None:
        render(args.render or sorted((HERE / "results").glob("alignment_quality_*.json")), args.output)
        return
    args.json = args.json or HERE / "results" / f"alignment_quality_{args.tag or args.preset}.json"
    result = run(args)
    save(result, args.json)
    render(sorted((HERE / "results").glob("alignment_quality_*.json")) if args.json.parent == HERE / "results"
           else [args.json], args.output)


if __name__ == "__main__":
    main()
