"""RA-Rec's cost with the default LLM (SmolLM2-135M-Instruct) on MovieLens-100K prompts.

Measures: trainable parameters vs the LLM's; prompt tokens per user vs ID
translation (every history title spelled out); alignment training seconds
per 1,000 samples; items/s through the item tower; users/s of full-catalogue
ranking from cached vectors; peak memory. Writes docs/benchmarks.md.

    python benchmarks/efficiency.py --data ../shared/data/ml-100k
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import write_section

from rarec import RARecommender
from rarec.data import read_recbole
from rarec.llm import FrozenLLM
from rarec.model_selection import leave_last_out


def parameter_rows(llm: FrozenLLM) -> list[tuple[str, int]]:
    """Trainable parameters of both towers for several settings (no training needed)."""
    from rarec.align import PrefixConfig, PrefixProjector

    rows = []
    for label, user_k, cfg in [
        ("per-layer maps (paper), SASRec d=64", 1, dict(reparameterization="layer")),
        ("per-layer maps, ComiRec d=64 K=4 (one map serves all K)", 4, dict(reparameterization="layer")),
        ("shared map (ablation)", 1, dict(reparameterization="shared")),
        ("low-rank r=16", 1, dict(reparameterization="low_rank", rank=16)),
        ("no ID (text-only prefix tuning)", 1, dict(use_id=False)),
    ]:
        total = 0
        for k in (user_k, 1):
            proj = PrefixProjector(llm.spec, PrefixConfig(id_dim=64, n_interests=k, n_ctx=4, **cfg))
            total += sum(p.numel() for p in proj.parameters())
        rows.append((label, total))
    return rows



def id_translation_tokens(prompts, history) -> int:
    """Tokens of a user prompt that spells out *every* history title (ID translation), for comparison."""
    text = prompts.user_template.format(history="; ".join(prompts.titles[i] for i in history))
    return len(prompts.tokenizer(text)["input_ids"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/ml-100k")
    parser.add_argument("--samples", type=int, default=64, help="training samples timed")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parents[1] / "docs/benchmarks.md")
    args = parser.parse_args()
    torch.manual_seed(0)

    log, text = read_recbole(args.data).k_core(5)
    split = leave_last_out(log, n_valid=0)
    llm = FrozenLLM.load(None, device="cpu")
    n_llm = llm.n_parameters
    lines = ["## Efficiency with the default LLM (SmolLM2-135M-Instruct, fp32, CPU)", "",
             "Reproduce: `python benchmarks/efficiency.py --data ../shared/data/ml-100k` "
             f"({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}).", "",
             "### Trainable parameters (both towers, n_ctx=4, one ID token per vector)", "",
             f"The frozen LLM has {n_llm:,} parameters.", "",
             "| setting | trainable | share of the LLM |", "|---|---|---|"]
    for label, count in parameter_rows(llm):
        lines.append(f"| {label} | {count:,} | {count / n_llm:.2%} |")

    # prompt tokens: RA-Rec's user prompt vs every history title spelled out
    rec = RARecommender(backbone="bpr", backbone_params={"dim": 64}, cf_epochs=1, epochs=1, max_train_samples=args.samples,
                        batch_size=16, align_weight=0.1, device="cpu", random_state=0, verbose=0)
    from rarec.llm import PromptBuilder

    prompts = PromptBuilder(llm.tokenizer, text.align(log.items), rec.user_template, rec.item_template,
                            rec.n_history_titles, rec.max_prompt_tokens)
    long_users = [s for s in log.user_sequences() if len(s) >= 200]
    lines += ["", f"### Prompt tokens per user ({len(long_users)} ML-100K users with at least 200 interactions, "
              "last N items)", "", "| history length N | RA-Rec user prompt (mean) | ID translation: all N titles (mean) |",
              "|---|---|---|"]
    for n in (10, 50, 200):
        ours = np.mean([len(prompts.user_tokens(s[-n:])) for s in long_users])
        spelled = np.mean([id_translation_tokens(prompts, s[-n:]) for s in long_users])
        lines.append(f"| {n} | {ours:.1f} (+ {1 + 4} prefix positions per layer) | {spelled:.1f} |")

    # training time: a real fit on a small sample budget, timing only the alignment epoch
    rec.set_params(llm=(llm.model, llm.tokenizer))
    rec.fit(split.train, item_text=text)
    epoch = rec.training_log_[0]
    per_1k = epoch["seconds"] / epoch["samples"] * 1000
    # items/s through the item tower, users/s of ranking from cached vectors
    items = np.arange(256)
    t0 = time.perf_counter()
    rec.towers_.encode_items(items)
    items_per_s = len(items) / (time.perf_counter() - t0)
    users = np.arange(rec.n_users_)
    t0 = time.perf_counter()
    for _ in range(5):
        torch.topk(rec.ranker_.scores(rec.user_vectors_[users]), 10, dim=1)
    users_per_s = 5 * len(users) / (time.perf_counter() - t0)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    lines += ["", "### Speed and memory", "",
              "| measure | value |", "|---|---|",
              f"| alignment training, seconds per 1,000 samples (batch 16, softmax + alignment loss) | {per_1k:,.0f} |",
              f"| item tower, items/s | {items_per_s:.1f} |",
              f"| full-catalogue ranking from cached vectors ({rec.n_items_} items), users/s | {users_per_s:,.0f} |",
              f"| peak resident memory of the process | {peak_gib:.2f} GiB |", ""]
    write_section(args.output, "\n".join(lines) + "\n", marker="efficiency")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
