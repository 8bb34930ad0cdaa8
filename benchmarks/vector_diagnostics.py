"""What the LLM towers' vectors look like next to the CF embeddings they come from (issue #7's "why").

    python benchmarks/vector_diagnostics.py --data ../shared/data/ml-100k
    python benchmarks/vector_diagnostics.py --render

Fits one RA-Rec on SASRec (the CPU preset of alignment_quality.py) and reports,
for the item vectors of the LLM tower and the CF item embeddings:

- anisotropy: the mean cosine similarity of random item pairs (0 for
  directions spread evenly; near 1 when all vectors share one direction);
- the share of the variance in the first principal direction, and the
  effective rank (participation ratio of the singular values squared);
- per test user, the Spearman correlation between the LLM score and the CF
  score over the catalogue, and the rank of the test item under each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from alignment_quality import PRESETS, SharedBackbones
from common import write_section

from rarec import RARecommender
from rarec.data import read_recbole
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "vector_diagnostics.json"


def geometry(vectors: torch.Tensor, rng: np.random.Generator) -> dict:
    v = vectors.double()
    unit = v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)
    a, b = rng.integers(0, len(v), (2, 20000))
    keep = a != b
    cosine = (unit[a[keep]] * unit[b[keep]]).sum(1)
    singular = torch.linalg.svdvals(v - v.mean(0))
    energy = singular**2
    return {"mean_pair_cosine": float(cosine.mean()), "first_direction_share": float(energy[0] / energy.sum()),
            "effective_rank": float(energy.sum() ** 2 / (energy**2).sum()), "dim": v.shape[1],
            "mean_norm": float(v.norm(dim=1).mean()),
            "mean_direction_share": float((v.mean(0).norm() ** 2) / (v.norm(dim=1) ** 2).mean())}


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    rx, ry = x.argsort().argsort().double(), y.argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()))


def run(data: Path, seed: int, llm: str | None = None, cf_epochs: int | None = None) -> dict:
    preset = {k: v for k, v in PRESETS["cpu"].items() if k not in ("seeds", "cf_seed")}
    log, text = read_recbole(data).k_core(5)
    split = leave_last_out(log, n_valid=0)
    inner = leave_last_out(split.train, n_valid=0)
    backbone = SharedBackbones(inner.train, inner.test, "cpu", cf_epochs).get("sasrec", seed)
    rec = RARecommender(backbone="sasrec", llm=llm, device="cpu", llm_dtype="float32", random_state=seed, verbose=0,
                        **preset).fit(split.train, item_text=text)
    rng = np.random.default_rng(seed)
    llm_scores = rec.user_vectors_ @ rec.item_vectors_.T
    cf_scores = torch.cat([backbone.scorer(split.train)(np.arange(s, min(s + 256, rec.n_users_)))
                           for s in range(0, rec.n_users_, 256)]).float()
    seen = rec.seen_
    correlations, llm_ranks, cf_ranks = [], [], []
    for user, item in zip(split.test.user_codes, split.test.item_codes):
        mask = torch.ones(rec.n_items_, dtype=torch.bool)
        mask[torch.as_tensor(seen.indices[seen.indptr[user]:seen.indptr[user + 1]])] = False
        mask[item] = True
        ls, cs = llm_scores[user][mask], cf_scores[user][mask]
        position = int(mask[:item].sum())
        correlations.append(spearman(ls, cs))
        llm_ranks.append(int((ls > ls[position]).sum()) + 1)
        cf_ranks.append(int((cs > cs[position]).sum()) + 1)
    return {
        "preset": preset, "seed": seed,
        "llm_item_vectors": geometry(rec.item_vectors_, rng),
        "llm_user_vectors": geometry(rec.user_vectors_, rng),
        "cf_item_embeddings": geometry(backbone.item_embeddings(), rng),
        "spearman_llm_vs_cf": {"median": float(np.median(correlations)), "mean": float(np.mean(correlations))},
        "test_item_rank": {"llm_median": float(np.median(llm_ranks)), "cf_median": float(np.median(cf_ranks)),
                           "llm_better_share": float(np.mean(np.array(llm_ranks) < np.array(cf_ranks)))},
        "n_items": rec.n_items_,
    }


def to_markdown(r: dict) -> str:
    lines = ["## What the LLM tower's vectors look like", "",
             "Reproduce: `python benchmarks/vector_diagnostics.py --data ../shared/data/ml-100k` (one RA-Rec on "
             f"SASRec, sample_fraction={r['preset']['sample_fraction']}, epochs={r['preset']['epochs']}, seed "
             f"{r['seed']}).", "",
             "| vectors | dim | mean cosine of random pairs | variance in the 1st direction | effective rank | "
             "mean direction's share of the squared norm |", "|---|---|---|---|---|---|"]
    for key, label in (("llm_item_vectors", "LLM item tower"), ("llm_user_vectors", "LLM user tower"),
                       ("cf_item_embeddings", "SASRec item embeddings")):
        g = r[key]
        lines.append(f"| {label} | {g['dim']} | {g['mean_pair_cosine']:.3f} | {g['first_direction_share']:.1%} | "
                     f"{g['effective_rank']:.1f} | {g['mean_direction_share']:.1%} |")
    s, t = r["spearman_llm_vs_cf"], r["test_item_rank"]
    lines += ["", f"Per test user, over the {r['n_items']:,} items: Spearman correlation of the LLM score with the "
              f"CF score, median {s['median']:.3f} (mean {s['mean']:.3f}). Median rank of the test item: "
              f"{t['llm_median']:.0f} by the LLM score, {t['cf_median']:.0f} by the CF score; the LLM score ranks "
              f"it higher for {t['llm_better_share']:.0%} of the users.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm", default=None, help="LLM folder or .gguf (default: SmolLM2-135M)")
    parser.add_argument("--cf-epochs", type=int, default=None, help="cap on CF epochs (smoke runs only)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    if not args.render:
        result = run(args.data, args.seed, args.llm, args.cf_epochs)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1), file=sys.stderr)
    write_section(args.output, to_markdown(json.loads(args.json.read_text())), marker="vector-diagnostics")


if __name__ == "__main__":
    main()
