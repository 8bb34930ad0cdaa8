"""Cold items: does the LLM score lose to its ID vectors by ranking cold items worse, or by scoring them too low?

    python benchmarks/cold_calibration.py --seed 0 --users 8000 --text-rank 512 --text-weight 0.5 \
        --balance-blocks --samples 40000 --llm-dtype bfloat16 --max-prompt-tokens 16 --head-batch-size 64 \
        --head-lr 4e-4 --forward-only-negatives --text-factors-id-dropout 0.25 \
        --checkpoints benchmarks/output/checkpoints

Takes ``cold_items.py``'s options for its ``rarec_text_factors`` row and one
seed; with ``--checkpoints`` pointing at that row's finished fit it only
resumes it (minutes), otherwise it fits. For the LLM score and for the ID
vectors it distils (``id_vectors_text_factors``, no LLM), over the same cold
test users, it separates two things HR@100 mixes:

- **order among the cold items**: the held-out item's rank among the cold
  items alone (HR@10 and HR@100 within them), which no common shift or scale
  of the cold items' scores changes;
- **level against the warm items**: the share of each user's top 100 that
  is cold, and the gap between the mean score of the cold and of the warm
  items in units of the user's score spread.

Every test target is a cold item, so the level alone moves HR@100 a lot
(``cold_borrowing.py --scales``). Beside these: the target's rank against
the warm items alone, the cold scores' spread relative to the warm ones, how
far above the user's mean score the 100th warm item and the target stand,
the model's own ID vectors on the same users, and what-ifs that lift (by one
amount, or user by user) or stretch the LLM score's cold items to its ID
vectors' level and spread, no held-out item deciding them (session 58). Results: benchmarks/results/
cold_calibration_<data>.json (one entry per seed and setting); nothing is
written to the docs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

import cold_items
from rarec._scoring import cf_scores

HERE = Path(__file__).resolve().parent


def level_and_order(scorer, held_out: sp.csr_matrix, seen: sp.csr_matrix, n_warm: int,
                    batch: int = 256, lift: float | np.ndarray = 0.0, stretch: float = 1.0,
                    gaps: list | None = None) -> dict[str, float]:
    """The cold items' level and order (module docstring) for each user with one held-out (cold) item, averaged:
    ``scorer(user_codes)`` scores every item (warm ones first, ``n_warm`` of them), ``seen`` items are excluded.
    ``lift``: every cold item's score is first raised by this many of the user's score spreads (a what-if of
    another level, the order among cold items unchanged), or by an array of one lift per user (the users with a
    held-out item, in order); ``stretch``: before that, each user's cold scores are spread this many times wider
    about their mean (another shape, the same order and mean). ``gaps``: a list that receives each user's
    ``cold_gap``, in that order."""
    users = np.flatnonzero(np.diff(held_out.indptr))
    found = {"hr@100": [], "cold_share@100": [], "cold_gap": [], "cold_spread": [], "hr@100_against_warm": [],
             "hr@10_within_cold": [], "hr@100_within_cold": [], "warm_100th_z": [], "target_z": []}
    for start in range(0, len(users), batch):
        rows = users[start:start + batch]
        raise_by = lift[start:start + batch, None] if np.ndim(lift) else lift
        scores = torch.as_tensor(scorer(rows)).double().numpy().copy()
        excluded = seen[rows].toarray() > 0
        scores[excluded] = np.nan
        unit = np.nanstd(scores, axis=1, keepdims=True)  # the user's spread before any what-if
        cold_mean = np.nanmean(scores[:, n_warm:], axis=1, keepdims=True)
        scores[:, n_warm:] = cold_mean + stretch * (scores[:, n_warm:] - cold_mean) + raise_by * unit
        target = held_out[rows].indices  # one per user
        mine = scores[np.arange(len(rows)), target]
        finite = np.where(excluded, -np.inf, scores)
        rank = (finite > mine[:, None]).sum(1)
        cold_rank = (finite[:, n_warm:] > mine[:, None]).sum(1)
        depth = min(100, scores.shape[1])  # a catalogue of fewer items: all of them
        top = np.argpartition(-finite, depth - 1, axis=1)[:, :depth]
        spread = np.nanstd(scores, axis=1)
        gap = (np.nanmean(scores[:, n_warm:], axis=1) - np.nanmean(scores[:, :n_warm], axis=1)) / spread
        found["cold_spread"] += list(np.nanstd(scores[:, n_warm:], axis=1) / np.nanstd(scores[:, :n_warm], axis=1))
        found["hr@100_against_warm"] += list((finite[:, :n_warm] > mine[:, None]).sum(1) < 100)
        # how far above each user's mean score the 100th warm item and the target stand, in the user's spreads
        mean = np.nanmean(scores, axis=1)
        warm_depth = min(100, n_warm)
        warm_100th = -np.partition(-finite[:, :n_warm], warm_depth - 1, axis=1)[:, warm_depth - 1]
        found["warm_100th_z"] += list((warm_100th - mean) / spread)
        found["target_z"] += list((mine - mean) / spread)
        found["hr@100"] += list(rank < 100)
        found["cold_share@100"] += list((top >= n_warm).mean(1))
        found["cold_gap"] += list(gap)
        if gaps is not None:
            gaps.extend(gap)
        found["hr@10_within_cold"] += list(cold_rank < 10)
        found["hr@100_within_cold"] += list(cold_rank < 100)
    return {key: float(np.mean(values)) for key, values in found.items()} | {"users": int(len(users))}


def id_vector_levels(train, test, texts, cold, args) -> dict:
    """:func:`level_and_order` of the text-factor ID vectors (``cold_items.id_vectors_row``'s own scorer)."""
    seen = {}
    original = cold_items.full_ranking_metrics

    def spy(scorer, held_out, exclude, **kwargs):
        seen.update(scorer=scorer, held_out=held_out, exclude=exclude)
        return original(scorer, held_out, exclude, **kwargs)

    cold_items.full_ranking_metrics = spy
    try:
        cold_items.id_vectors_row("id_vectors_text_factors", train, test, texts, cold, args)
    finally:
        cold_items.full_ranking_metrics = original
    n_warm = cold_items.warm_catalogue(train, texts, cold)[0].n_items  # the cold items come last
    return level_and_order(seen["scorer"], seen["held_out"], seen["exclude"], n_warm)


def llm_levels(seed: int, train, test, texts, cold, args, teacher_gap: float | None = None,
               teacher_spread: float | None = None) -> dict:
    """:func:`level_and_order` of the RA-Rec text-factor row's LLM score (``cold_items.llm_row``, resumed from its
    checkpoint when it is there), measured where the row evaluates, after ``add_items``. With ``teacher_gap`` (the
    ID vectors' ``cold_gap``) also ``at_teacher_level``: the same with the cold items lifted by the difference of
    the two mean gaps, what the LLM score would rank if it placed cold items at its teacher's level (no held-out
    item decides the lift). Always: ``id_vectors_in_model``, the same for the model's own ID vectors (the teacher
    as the fit saw it, for the same users), ``gap_correlation`` (of the two per-user cold gaps) and
    ``at_teacher_level_per_user`` (the LLM score's cold items lifted, user by user, to the teacher's gap);
    with ``teacher_spread`` (their ``cold_spread``) also ``at_teacher_shape``: the cold
    scores first stretched to the teacher's spread relative to the warm ones, then lifted so."""
    found = {}
    original = cold_items.RARecommender.evaluate

    def evaluate(self, X, **kwargs):
        held_out = self._known_interactions(X).to_csr()
        n_warm = self.n_items_ - len(cold_items.warm_catalogue(train, texts, cold)[2])
        student_gaps, teacher_gaps = [], []
        found.update(level_and_order(self._scores, held_out, self.seen_, n_warm, gaps=student_gaps))
        towers = self.towers_  # the ID vectors the fit distils, the added items' as add_items built them

        def id_vectors(users: np.ndarray) -> torch.Tensor:
            return cf_scores(towers.cf_user_vectors[torch.as_tensor(users)], towers.item_cf[:, 0].float())

        found["id_vectors_in_model"] = level_and_order(id_vectors, held_out, self.seen_, n_warm, gaps=teacher_gaps)
        student_gaps, teacher_gaps = np.asarray(student_gaps), np.asarray(teacher_gaps)
        found["gap_correlation"] = float(np.corrcoef(student_gaps, teacher_gaps)[0, 1])
        found["at_teacher_level_per_user"] = level_and_order(self._scores, held_out, self.seen_, n_warm,
                                                             lift=teacher_gaps - student_gaps)
        if teacher_gap is not None:
            found["at_teacher_level"] = level_and_order(self._scores, held_out, self.seen_, n_warm,
                                                        lift=teacher_gap - found["cold_gap"])
        if teacher_gap is not None and teacher_spread is not None:
            found["at_teacher_shape"] = level_and_order(self._scores, held_out, self.seen_, n_warm,
                                                        lift=teacher_gap - found["cold_gap"],
                                                        stretch=teacher_spread / found["cold_spread"])
        return original(self, X, **kwargs)

    cold_items.RARecommender.evaluate = evaluate
    try:
        row = cold_items.llm_row("rarec_text_factors", seed, train, test, texts, cold, args)
    finally:
        cold_items.RARecommender.evaluate = original
    return {**found, "row_hr@100": row["hr@100"], "resumed": bool(row.get("resumed"))}


def main(argv=None) -> None:
    parser = cold_items.build_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0, help="the LLM row's seed")
    args = parser.parse_args(argv)
    if args.split != "test":
        parser.error("cold_calibration.py reads the test split's rows only")
    cold_items.prepare(args)
    log, text = cold_items.read_dataset(args.data)
    texts = text.align(log.items, on_unknown="ignore")
    train, test_pairs, cold = cold_items.cold_split(log, cold_items.COLD_FRACTION, cold_items.SPLIT_SEED)
    test = cold_items.as_log(test_pairs, log)
    teacher = id_vector_levels(train, test, texts, cold, args)
    print("ID vectors:", json.dumps(teacher), file=sys.stderr, flush=True)
    student = llm_levels(args.seed, train, test, texts, cold, args, teacher["cold_gap"], teacher["cold_spread"])
    print("LLM score:", json.dumps(student), file=sys.stderr, flush=True)
    path = HERE / "results" / f"cold_calibration_{args.data.name}.json"
    folder = cold_items.checkpoint_folder(args, "rarec_text_factors", args.seed, cold_items.row_id_dropout(
        "rarec_text_factors", args), dict(text_rank=args.text_rank, text_weight=args.text_weight))
    entries = json.loads(path.read_text()) if path.exists() else []
    setting = folder.name if folder is not None else f"seed{args.seed}_users{args.users}"
    entries = [e for e in entries if e["setting"] != setting] + [
        {"setting": setting, "seed": args.seed, "id_vectors": teacher, "llm": student}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
