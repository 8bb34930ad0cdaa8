"""How much of each part of the ID vectors can be read back from the LLM's item vectors? (issue #16)

    python benchmarks/id_recovery.py benchmarks/output/cold_models/rarec_text_factors_seed0 [MORE MODELS]
    python benchmarks/id_recovery.py --render     # docs section from the saved JSON

The student's score is a dot product of a user vector and an item vector, and the teacher it distils is the dot
product of the ID vectors. However the user side is trained, the student can rank items by a part of their ID vector
(SASRec's embedding, the EASE factors, the text factors) only as far as its item vectors carry that part. This script
takes saved RA-Rec models and measures, for every known item, how well each part of its ID vector is predicted by a
linear map of

- the LLM's item vector before the output heads (``item_basis``, kept by models whose user head pools the history),
- the item vector the score uses (``item_vectors_``, after the heads),

as the R² of a ridge regression fitted on a seeded 60% of the items, its penalty chosen on 20% and scored on the
last 20% (the share of the part's variance across items that the map recovers). The user side is measured the same
way, on the saved models' known users: each part of their ID vectors (``towers_.cf_user_vectors``, whose columns
are laid out as the items') predicted from the user vectors the score uses (``user_vectors_``). Effective rank: exp
of the entropy of the normalised singular values. Each part's share of the ID vectors' variance is given too. No LLM
runs (seconds per model) unless ``--words-only`` adds the control: the known items encoded again, each with its own
prompt but the catalogue's mean ID vector, so that only the words tell them apart (minutes), and ``--frozen`` the
controls of the frozen LLM with no prefix, its vectors pooled as the paper does (the last token's final state) and
as the research setting ``PrefixConfig.pooling="mean"`` does (the mean of the tokens' final states; minutes).

Results: benchmarks/results/id_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from common import results_json, write_section
from teacher_span import effective_rank

from rarec import RARecommender
from rarec.align._towers import length_sorted_batches

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "id_recovery.json"
#: the control: the same LLM and trained prefixes, each item's own prompt, no item's own ID vector
WORDS_ONLY = "words only: LLM item vectors before the heads, every ID vector the catalogue's mean"
#: the frozen-LLM controls: each item's own prompt through the LLM with no prefix at all, pooled two ways
FROZEN = {"last": "frozen LLM, no prefix: the last token's final state",
          "mean": "frozen LLM, no prefix: the mean of the tokens' final states"}
HELD_OUT, SEED, ALPHAS = 0.2, 0, (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def held_out_r2(features: np.ndarray, target: np.ndarray, seed: int = SEED) -> tuple[float, float]:
    """R² on a seeded held-out share of the rows of a ridge map from ``features`` to ``target``, and the ridge
    penalty it used: the rows are split 60/20/20, the penalty (of ``ALPHAS``, in units of the training rows'
    count, the features standardised on them) is chosen on the middle share and the map is scored on the last.
    R² is pooled over the target's columns: the share of their variance across rows that the map recovers."""
    order = np.random.default_rng(seed).permutation(len(features))
    first, second = int(round(len(features) * (1 - 2 * HELD_OUT))), int(round(len(features) * (1 - HELD_OUT)))
    train, valid, test = order[:first], order[first:second], order[second:]
    mean, std = features[train].mean(0), features[train].std(0) + 1e-8
    x = (features - mean) / std
    y = target - target[train].mean(0)
    gram, moment = x[train].T @ x[train], x[train].T @ y[train]

    def r2(alpha: float, rows: np.ndarray) -> float:
        weights = np.linalg.solve(gram + alpha * len(train) * np.eye(x.shape[1]), moment)
        return float(1.0 - ((y[rows] - x[rows] @ weights) ** 2).sum() / ((y[rows] - y[rows].mean(0)) ** 2).sum())

    alpha = max(ALPHAS, key=lambda a: r2(a, valid))
    return r2(alpha, test), alpha


def id_parts(towers) -> dict[str, slice]:
    """The ID vector's parts by column: the backbone's embedding, then the EASE and the text factors if present."""
    names = ["backbone"] + [name for name, f in (("EASE factors", towers.factors),
                                                 ("text factors", towers.text_factors)) if f is not None]
    widths = towers.id_block_widths()
    starts = np.cumsum([0, *widths[:-1]])
    return {name: slice(int(start), int(start + width)) for name, start, width in zip(names, starts, widths)}


def frozen_vectors(towers, items: int, pooling: str, batch: int = 64) -> np.ndarray:
    """The first ``items`` items' prompts through the frozen LLM alone (no prefix), pooled by ``pooling``."""
    llm, tokens = towers.llm, [towers.item_tokens[i] for i in range(items)]
    out = np.empty((items, llm.spec.hidden_size))
    with torch.no_grad():
        for rows in length_sorted_batches(tokens, batch):
            out[rows] = llm.forward([tokens[r] for r in rows], pooling=pooling).double().cpu().numpy()
    return out


def measure(folder: Path, words_only: bool = False, llm=None, frozen: bool = False) -> dict:
    """One saved model's row; ``words_only`` adds the control of the known items re-encoded through the LLM with
    their own prompts but every ID vector the catalogue's mean, so that the prefix tells no item from another
    (``llm``: the one the model was fitted with, as ``RARecommender.load`` takes it; default: the default LLM)."""
    rec = RARecommender.load(folder, llm=llm)
    towers = rec.towers_
    known = towers.backbone.n_items_
    ids = towers.item_cf[:known, 0].double().numpy()
    spaces = {"item vectors after the heads": rec.item_vectors_[:known].double().numpy()}
    if towers.item_basis is not None:
        spaces = {"LLM item vectors before the heads": towers.item_basis[:known].double().numpy(), **spaces}
    if words_only:
        mean = towers.item_cf[:known].mean(0, keepdim=True).expand(known, -1, -1)
        words = towers.encode("item", mean, [towers.item_tokens[i] for i in range(known)], progress=True, heads=False)
        spaces[WORDS_ONLY] = words.double().numpy()
    if frozen:
        spaces.update({FROZEN[pooling]: frozen_vectors(towers, known, pooling) for pooling in FROZEN})
    row = {"model": f"{folder.parent.name}/{folder.name}", "path": str(folder), "items": int(known),
           "n_id_tokens": rec.n_id_tokens, "epochs": rec.epochs, "id_width": int(ids.shape[1])}
    centred, parts = ids - ids.mean(0), id_parts(towers)
    row["parts"] = {name: {"width": part.stop - part.start,
                           "effective_rank": effective_rank(torch.as_tensor(ids[:, part])),
                           "variance_share": float((centred[:, part] ** 2).sum() / (centred ** 2).sum())}
                    for name, part in parts.items()}
    row["spaces"] = {space: recovered(vectors, ids, parts) for space, vectors in spaces.items()}
    if towers.cf_user_vectors is not None:
        row["users"] = measure_users(rec, parts)
    return row


def recovered(vectors: np.ndarray, ids: np.ndarray, parts: dict[str, slice]) -> dict:
    """How well ``vectors`` carry each part of ``ids`` (rows: the same items or users): their effective rank,
    and each part's held-out R² and ridge penalty."""
    found = {"effective_rank": effective_rank(torch.as_tensor(vectors)), "r2": {}, "ridge": {}}
    for name, part in parts.items():
        found["r2"][name], found["ridge"][name] = held_out_r2(vectors, ids[:, part])
    return found


def measure_users(rec: RARecommender, parts: dict[str, slice]) -> dict:
    """The user side of a row: the known users' (those with a training history) ID vectors, the first interest's,
    against the user vectors the score uses; each part's share of the ID vectors' variance across those users."""
    known = torch.as_tensor(rec.seen_.getnnz(axis=1) > 0)
    ids = rec.towers_.cf_user_vectors[known, 0].double().numpy()
    vectors = rec.user_vectors_[known].double().numpy()
    centred = ids - ids.mean(0)
    return {"users": int(known.sum()),
            "parts": {name: {"variance_share": float((centred[:, part] ** 2).sum() / (centred ** 2).sum())}
                      for name, part in parts.items()},
            "spaces": {"user vectors the score uses": recovered(vectors, ids, parts)}}


def render(result: dict) -> str:
    lines = ["## Can the item vectors carry the ID vectors? (no training)", "",
             f"Written by `benchmarks/id_recovery.py` on {result['machine']}. For each saved model, each part of "
             "the known items' ID vectors (what the student distils) predicted by a ridge map of the LLM's item "
             f"vectors: R² on a seeded {HELD_OUT:.0%} of the items held out of the map's fit and of its penalty's "
             "choice (another 20%). Each part's share of the variance: its share of the ID vectors' total variance "
             "across the known items. Effective rank: exp of the entropy of the normalised singular values.", "",
             "| model | items | ID tokens | epochs | vectors | effective rank | R² of each ID part |",
             "|---|---|---|---|---|---|---|"]
    for row in sorted(result["rows"], key=lambda r: (r["items"], r["model"])):
        widths = ", ".join(f"{name} {p['width']} (eff. rank {p['effective_rank']:.0f}"
                           + (f", {p['variance_share']:.0%} of the variance" if "variance_share" in p else "") + ")"
                           for name, p in row["parts"].items())
        for space, found in row["spaces"].items():
            r2 = ", ".join(f"{name} {value:.2f}" for name, value in found["r2"].items())
            lines.append(f"| {row['model']} ({widths}) | {row['items']:,} | {row['n_id_tokens']} | {row['epochs']} | "
                         f"{space} | {found['effective_rank']:.0f} | {r2} |")
    users = [row for row in sorted(result["rows"], key=lambda r: (r["items"], r["model"])) if "users" in row]
    if users:
        lines += ["", "The user side: each part of the known users' ID vectors (the teacher's user side) predicted by "
                  "a ridge map of the user vectors the score uses, the same protocol over users instead of items.", "",
                  "| model | users | vectors | effective rank | each ID part's share of the variance "
                  "| R² of each ID part |",
                  "|---|---|---|---|---|---|"]
        for row in users:
            shares = ", ".join(f"{name} {p['variance_share']:.0%}" for name, p in row["users"]["parts"].items())
            for space, found in row["users"]["spaces"].items():
                r2 = ", ".join(f"{name} {value:.2f}" for name, value in found["r2"].items())
                lines.append(f"| {row['model']} | {row['users']['users']:,} | {space} | "
                             f"{found['effective_rank']:.0f} | {shares} | {r2} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="*", help="saved RA-Rec model folders")
    parser.add_argument("--words-only", action="store_true", help="also the words-only control (runs the LLM)")
    parser.add_argument("--frozen", action="store_true",
                        help="also the frozen-LLM controls: the items' prompts with no prefix, the last token's "
                             "state and the mean of the tokens' states (runs the LLM)")
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    result = json.loads(args.results.read_text()) if args.results.exists() else {"rows": []}
    if not args.render:
        if not args.models:
            parser.error("name at least one saved model folder (or --render)")
        for folder in args.models:
            row = measure(folder, args.words_only, frozen=args.frozen)
            print(json.dumps(row), flush=True)
            earlier = [r for r in result["rows"] if r["model"] == row["model"]]
            if earlier:  # a control measured before (--words-only) stays unless measured again
                row["spaces"] = {**earlier[0]["spaces"], **row["spaces"]}
            result["rows"] = [r for r in result["rows"] if r["model"] != row["model"]] + [row]
        result["machine"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(results_json(result))
    write_section(args.output, render(result), marker="id-recovery")
    print(f"wrote {args.output} and {args.results}")


if __name__ == "__main__":
    main()
