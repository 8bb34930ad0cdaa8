"""Which output-head settings rank best, on the fixed vectors of one checkpointed fit of the objective study?

    python benchmarks/head_search.py --data ../shared/data/amazon-beauty --users 4000 \\
        --variant "default + EASE and TF-IDF factors on every user, ID blocks balanced, 20,000 samples, bf16"
    python benchmarks/head_search.py --data ../shared/data/amazon-beauty --render

The fit must have been run by ``objective_study.py --checkpoints DIR`` past
its last prefix epoch (same data, variant, seed, user preset and dtype). A
copy of its checkpoint folder without the heads' stage is resumed, so the
estimator rebuilds exactly what its heads' stage saw (the samples, their ID
vectors, both teachers, the logQ table) and encodes the samples' users and the
catalogue once, as the fit does. There, instead of training one pair of
heads, each candidate of :data:`CANDIDATES` trains its own with the
estimator's head trainer (``rarec.align._trainer._fit_heads``, the fit's
settings with the candidate's changes, the same random stream), and the fit
stops. Each candidate is ranked on the split the fit validates on and on the
test users (whole catalogue, training items excluded), beside popularity and
SASRec; pick on validation. The candidate with no changes must reproduce the
fit's own heads, so its row checks the harness.

Results: benchmarks/results/head_search_<data folder>.json; docs section "head-search-<data folder>" (for a fit of
another seed N, ``--seed N``: head_search_<data folder>_seedN.json and "head-search-<data folder>-seedN"; ``--render``
takes ``--seed`` too).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import DATASET_TITLES, dataset_suffix, read_dataset, results_json, write_section
from objective_study import (HERE, PROMPT_CACHE, VARIANTS, checkpoint_folder, reference_rows, run_files, run_variant,
                             shared_sasrec, user_subset)
from output_head import ranking

import rarec.align._trainer as trainer
from rarec.metrics import paired_difference
from rarec.model_selection import leave_last_out

FIT_HEADS = "the fit's heads"
#: name -> changes to the fit's alignment settings (``AlignmentConfig`` fields the heads' trainer reads). The fit's
#: own heads: 30 epochs, lr 1e-4 decayed along a cosine, a residual MLP of 1,024 units, batch 16, the batch's
#: targets + 64 random items (logQ-corrected), distilled 0.9 from the ID vectors' ranking plus the EASE teacher.
CANDIDATES = {
    FIT_HEADS: {},
    "lr 3e-4": dict(head_lr=3e-4),
    "lr 3e-5": dict(head_lr=3e-5),
    "60 epochs": dict(head_epochs=60),
    "10 epochs": dict(head_epochs=10),
    "linear heads": dict(head_hidden=0),
    "residual MLP 2048": dict(head_hidden=2048),
    "batch 64, lr 4e-4": dict(batch_size=64, head_lr=4e-4),
    "256 random negatives": dict(n_random_negatives=256),
    "distill 0.5": dict(distill=0.5),
    "distill 1.0": dict(distill=1.0),
    "teacher temperature 2": dict(distill_temperature=2.0),
    "512 random negatives": dict(n_random_negatives=512),
    "60 epochs, 256 random negatives": dict(head_epochs=60, n_random_negatives=256),
    # ``members``: that many heads, each on its own random stream (the first on the fit's), their scores averaged;
    # one row per ensemble size 2, 4, ... up to ``members``, named "<settings>, <k> heads averaged"
    "batch 64, lr 4e-4, heads averaged": dict(members=8, batch_size=64, head_lr=4e-4),
}
#: what the copied checkpoint leaves out: the heads' stage (so it runs again) and the catalogue the finished fit
#: encoded through its heads
NOT_COPIED = ("heads", "item_vectors")


class SearchDone(Exception):
    """Raised from the heads' stage once every candidate has its row: the fit has nothing more to give."""


def search_heads(candidates: dict[str, dict], inner, part, on_row):
    """A stand-in for the trainer's ``_train_heads``: encodes the heads' inputs as it does, then trains one pair of
    heads per candidate (a copy of the fit's random stream each) and passes each row to ``on_row(name, row)``;
    ``inner``/``part``: the split the fit validates on and the evaluated test split."""
    def train_heads(towers, samples, sequences, user_cf, user_tokens, user_states, teacher_items, log_q, config, rng,
                    group, extra_teacher, checkpointer=None, borrowed=None):  # not resumed in its heads' stage
        if borrowed is not None:
            raise ValueError("head_search does not train heads on borrowed-ID items (AlignmentConfig.borrowed_teacher)")
        start = time.perf_counter()
        users, items, pooled = trainer._head_inputs(towers, samples, sequences, user_cf, user_tokens, user_states,
                                                    config, group)
        score = head_scorer(towers, inner, part)
        on_row(None, {"encode_s": time.perf_counter() - start, "samples": len(samples), **score(None)})
        for name, changes in candidates.items():
            fields = {k: v for k, v in changes.items() if k != "members"}
            settings = dataclasses.replace(config, progress=False, **fields)
            log_q = trainer._log_q(samples.targets, len(items), settings, group, items.device)
            members, seconds, losses = [], [], []
            for member in range(changes.get("members", 1)):
                start = time.perf_counter()
                stream = copy.deepcopy(rng) if member == 0 else np.random.default_rng(
                    [int(copy.deepcopy(rng).integers(2**31)), member])
                heads, loss = trainer._fit_heads(users, items, pooled, samples, user_cf, teacher_items, log_q,
                                                 settings, stream, group, extra_teacher)
                members.append(heads), seconds.append(time.perf_counter() - start), losses.append(loss)
                if member == 0 and "members" in changes:  # the first member alone: the candidate without "members"
                    print(json.dumps({"head": f"{name}: first member", **{k: v for k, v in score(heads).items()
                                                                           if k != "per_user"}}), flush=True)
                if "members" not in changes:
                    on_row(name, {"changes": changes, "train_s": seconds[0], "loss": loss, **score(heads)})
                elif (member and ((member + 1) & member) == 0) or member + 1 == changes["members"]:  # 2, 4, 8, ...
                    label = name.replace("heads averaged", f"{member + 1} heads averaged")
                    on_row(label, {"changes": {**changes, "members": member + 1}, "train_s": sum(seconds),
                                   "loss": statistics.fmean(losses), **score(AveragedHeads(members))})
        raise SearchDone

    return train_heads


class AveragedHeads:
    """Several heads as one: each tower's vectors are the members' side by side, scaled by 1/sqrt(k), so that a dot
    product is the mean of the members' scores."""

    def __init__(self, members: list) -> None:
        self.members = list(members)

    def __call__(self, tower: str, vectors: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        parts = [member(tower, vectors, pooled) for member in self.members]
        return torch.cat(parts, dim=-1) / len(parts) ** 0.5


def head_scorer(towers, inner, part):
    """``score(heads)``: validation and test metrics (``output_head.ranking``) of the towers' vectors through
    ``heads`` (``None``: none); the users' vectors before any head are encoded once, as the fitted estimator
    encodes them (whole histories; the pooled history over the catalogue's outputs before the heads)."""
    def raw(log, users):
        sequences, width = log.user_sequences(), towers.item_outputs.shape[1]
        vectors, histories = torch.zeros(log.n_users, width), [sequences[u] for u in users]
        vectors[users] = towers.encode_users(histories, users, progress=True)  # no heads yet: their inputs
        if towers.item_basis is None:  # the user head reads no pooled history
            return vectors, None
        pooled = torch.zeros(log.n_users, width)
        pooled[users] = towers.pooled_history(histories)
        return vectors, pooled

    before = {"valid": raw(inner.train, np.unique(inner.test.user_codes)),
              "test": raw(part.train, np.flatnonzero(part.train.user_lengths() > 0))}

    def score(heads) -> dict:
        with torch.no_grad():
            if heads is None:
                users, items = {k: v for k, (v, _) in before.items()}, towers.item_outputs
            else:
                users = {k: heads("user", v, p) for k, (v, p) in before.items()}
                items = heads("item", towers.item_outputs)
        return ranking(users, items.float(), inner.test, inner.train, part.test, part.train)

    return score


def copied_checkpoint(source: Path, scratch: Path) -> Path:
    """A copy of a finished fit's checkpoint folder without its heads' stage (made once; reused while it exists)."""
    if not (source / "latest.json").exists():
        sys.exit(f"{source} holds no checkpoint: run objective_study.py with --checkpoints first (same --data, "
                 "--users, --variants, --seeds and --llm-dtype)")
    if not scratch.exists():
        shutil.copytree(source, scratch, ignore=lambda folder, names: [n for n in names if n in NOT_COPIED]
                        if Path(folder) == source else [])
    return scratch


def run_search(name: str, seed: int, backbone, evaluated, text, sample_scale: float, everyone,
               checkpoint: Path, candidates: dict[str, dict], on_row, prompt_cache: Path | None = PROMPT_CACHE,
               llm_dtype: str = "auto", verbose: int = 0) -> None:
    """Resume the fit whose heads-less checkpoint is ``checkpoint`` and search ``candidates`` at its heads' stage
    (``search_heads``); the arguments before it are ``objective_study.run_variant``'s (``evaluated``: its
    ``split``)."""
    inner = leave_last_out(evaluated.train, n_valid=0)  # the split the fit validates on
    original = trainer._train_heads
    trainer._train_heads = search_heads(candidates, inner, evaluated, on_row)
    try:
        run_variant(name, seed, backbone, evaluated, text, sample_scale, everyone, None, prompt_cache, "cpu",
                    llm_dtype, verbose, checkpoint)
    except SearchDone:
        return
    finally:
        trainer._train_heads = original
    raise RuntimeError(f"the fit of {name!r} never reached its heads' stage (does the variant train heads?)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--variant", default=None, help="the objective study's variant whose fit is searched")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--users", type=int, default=None, help="the objective study's --users")
    parser.add_argument("--llm-dtype", default="auto", help="the objective study's --llm-dtype")
    parser.add_argument("--checkpoints", type=Path, default=HERE / "output" / "checkpoints",
                        help="the objective study's --checkpoints")
    parser.add_argument("--candidates", default=";".join(CANDIDATES), help="names of CANDIDATES, ';'-separated")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    suffix = dataset_suffix(args.data)
    # one results file and docs section per searched fit's seed (seed 0 keeps the unsuffixed names)
    keyed = suffix + ("" if args.seed == 0 else f"_seed{args.seed}")
    results = HERE / "results" / f"head_search{keyed}.json"
    if not args.render:
        if args.variant not in VARIANTS:
            sys.exit(f"--variant must name one of the objective study's VARIANTS, not {args.variant!r}")
        unknown = [c for c in args.candidates.split(";") if c not in CANDIDATES]
        if unknown:
            sys.exit(f"unknown candidates {unknown}; known: {'; '.join(CANDIDATES)}")
        log, text = read_dataset(args.data)
        split = leave_last_out(log, n_valid=0)
        backbone = shared_sasrec(split.train, run_files(args.data, "cpu")[2])
        n_users = min(args.users or log.n_users, log.n_users)
        evaluated = user_subset(split, n_users)
        source = checkpoint_folder(args.checkpoints, args.data.name, args.variant, args.seed, n_users, "cpu",
                                   args.llm_dtype)
        checkpoint = copied_checkpoint(source, HERE / "output" / "head_search" / source.name)
        result = json.loads(results.read_text()) if results.exists() else {"rows": []}
        if result.get("variant", args.variant) != args.variant or result.get("seed", args.seed) != args.seed:
            sys.exit(f"{results} holds another fit's rows; move it aside first")
        result.update(dataset=args.data.name, variant=args.variant, seed=args.seed, users=n_users,
                      machine=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                      reference=reference_rows(backbone, split, evaluated))

        def on_row(name, row):
            if name is None:
                result["towers"] = row
            else:
                result["rows"] = [r for r in result["rows"] if r["head"] != name] + [{"head": name, **row}]
            print(json.dumps({"head": name, **{k: v for k, v in row.items() if k != "per_user"}}), flush=True)
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(results_json(result))

        run_search(args.variant, args.seed, backbone, evaluated, text, log.n_users / n_users, split.train,
                   checkpoint, {c: CANDIDATES[c] for c in args.candidates.split(";")}, on_row,
                   llm_dtype=args.llm_dtype, verbose=args.verbose)
    write_section(args.output, render(json.loads(results.read_text())),
                  marker="head-search" + keyed.replace("_", "-"))


def render(result: dict) -> str:
    title = DATASET_TITLES.get(result["dataset"], result["dataset"])
    towers, reference = result["towers"], result["reference"]
    backbone = reference["SASRec backbone"]["per_user"]
    best = max(result["rows"], key=lambda r: r["valid_ndcg@10"])["head"]
    lines = [f"## Output-head settings on one fit's fixed vectors ({title}, SmolLM2-135M, CPU)", "",
             f"Written by `benchmarks/head_search.py` on {result['machine']}. The fit: objective-study variant "
             f"\"{result['variant']}\", seed {result['seed']}, {result['users']:,} users, resumed from its "
             f"checkpoint at the heads' stage ({towers['samples']:,} samples; encoding their users, the catalogue "
             f"and the evaluated users before the heads took {towers['encode_s']:.0f} s). Each row trains one pair "
             "of heads with the estimator's head trainer, the fit's settings changed as named, the same random "
             "stream; \"the fit's heads\" reproduces the fit's own; \"k heads averaged\": k pairs, each on its own "
             "random stream (the first on the fit's), scored by the mean of their scores. Pick on validation (the "
             "best is in bold). Paired Δ: test NDCG@10 minus SASRec's, or minus the fit's heads', per user, mean ± "
             "one standard error (within about two standard errors is noise).", "",
             "| towers | valid NDCG@10 | valid HR@100 | test NDCG@10 | test HR@100 | paired Δ vs SASRec | "
             "paired Δ vs the fit's heads | heads' training (s) |", "|---|---|---|---|---|---|---|---|"]
    for name in ("popularity", "SASRec backbone"):
        lines.append(f"| {name} | {reference[name]['valid_ndcg@10']:.4f} | – | {reference[name]['ndcg@10']:.4f} | "
                     f"{reference[name]['hr@100']:.4f} | – | – | – |")

    own = next((r["per_user"] for r in result["rows"] if r["head"] == FIT_HEADS), None)

    def paired(row, other) -> str:
        if other is None or row["per_user"] is other:
            return "–"
        found = paired_difference([row["per_user"]], other)
        return f"{found['mean_difference']:+.4f} ± {found['standard_error']:.4f}"

    def line(label, row, seconds):
        return (f"| {label} | {row['valid_ndcg@10']:.4f} | {row['valid_hr@100']:.4f} | {row['ndcg@10']:.4f} | "
                f"{row['hr@100']:.4f} | {paired(row, backbone)} | {paired(row, own)} | {seconds} |")

    lines.append(line("RA-Rec towers, no heads", towers, "–"))
    for row in result["rows"]:
        label = f"**{row['head']}**" if row["head"] == best else row["head"]
        lines.append(line(f"+ heads: {label}", row, f"{row['train_s']:.0f}"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
