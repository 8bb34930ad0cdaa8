"""Cold items, where text is the only signal: can RA-Rec rank items nobody has interacted with?

    python benchmarks/cold_items.py --data ../shared/data/amazon-beauty --rows popularity,tfidf
    python benchmarks/cold_items.py --rows rarec,text_only --seeds 0 --users 4000   # LLM rows, CPU preset
    python benchmarks/cold_items.py --split valid --rows tfidf,id_vectors_text_factors --text-weight 0.5
    python benchmarks/cold_items.py --render

Protocol (issue #16, item 5): a seeded 10% of the items is held out
entirely: none of their interactions is in the training log. The test users
are those whose last interaction is with such an item; that interaction is
the test item, and each user is described by the rest of their history on
the other items (the training log). Every row ranks the whole catalogue
(warm and cold items) with the user's training items excluded.

Rows:

- popularity: training counts (a cold item has none, so it ranks last);
- TF-IDF: a classical content baseline; each item is the TF-IDF vector of
  its title and categories, a user the mean of their history's vectors,
  scored by cosine;
- ID vectors, no LLM: the dot product of the ID vectors an RA-Rec row is
  taught to reproduce (SASRec's, a cold item borrowing its text
  neighbour's; with text factors, each item's own TF-IDF factors
  appended): the ceiling of a student that copies them;
- RA-Rec: fitted on the training log, then ``add_items`` encodes the cold
  items from their text (their ID prefix is the CF embedding of the warm
  item nearest in TF-IDF of title and categories; the mean CF item embedding
  up to rarec 0.2.0);
- RA-Rec with ID dropout: the same, trained with ``--id-dropout`` of the
  batch's items given their text neighbour's CF embedding as ID prefix (as
  ``add_items`` gives a cold item), so the towers learn to read an item's
  text when its ID is borrowed;
- RA-Rec with ID dropout and a text-aware teacher: the same, also
  distilled from the backbone's logits plus 0.25 × the TF-IDF cosine of
  each sample's history and candidate (``objective_study.text_teacher``),
  so the towers learn the content match the TF-IDF row ranks by;
- RA-Rec with text factors: the ID vectors end in ``--text-rank`` TF-IDF
  factors at ``--text-weight`` (``rarec.cf.TextFactors``, a research
  setting), a cold item's its own text's; with ``--text-factors-id-dropout``
  that share of the batch's items borrows its text neighbour's SASRec part
  and keeps its own text factors, as a cold item's ID vector is built;
- text-only LLM: the same with ``use_id=False`` (no CF vector in any prompt).

``--epochs N`` and ``--forward-only-negatives`` change the LLM rows' training
budget (N alignment epochs; the random extra negatives encoded without
gradients, which makes a step cheaper), as do ``--max-prompt-tokens``,
``--head-batch-size`` and ``--head-lr`` (the estimator's parameters); such
rows are kept apart from the default's and say so in their label. ``--continue-from FOLDER`` (with
``--checkpoints``) starts a longer fit where a finished shorter one of the
same row, seed and settings ended, instead of from scratch
(``common.continued_from``: exact, as the learning rate is constant).

``--split valid`` runs the same protocol inside the test split's training
log (a second 10% of the items, drawn among the warm ones, held out; its own
cached SASRec), so that settings are chosen without the test users.

Every row keeps its per-user metrics (under the test users' ids), so that
the LLM rows are also compared with TF-IDF user by user: HR@100's ratio of
means (the issue's target) beside the mean per-user difference and its
standard error.

Results: benchmarks/results/cold_items_<data folder>.json; the docs section is
written from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from common import (alignment_overrides, cached_prompt_states, continued_from, prefix_overrides, read_dataset,
                    results_json, resumed_mark, resumed_note, write_section)
from objective_study import mean_and_per_user, seeded_users, shared_sasrec, text_teacher

from rarec import RARecommender
from rarec.cf import CFBackbone, PopularityRecommender
from rarec.data import InteractionLog
from rarec.metrics import full_ranking_metrics, paired_difference

HERE = Path(__file__).resolve().parent
KS, METRICS = (10, 100), ("hr", "ndcg")
COLD_FRACTION, SPLIT_SEED = 0.10, 0
DEFAULT_SAMPLES = RARecommender().max_train_samples  # prefix-training samples per LLM row, unless --samples
#: The users every LLM row aligned on until session 57 (``--users 4000``: each test user and seeded others); a row
#: aligned on another count is kept apart and says so.
PRESET_USERS = 4000
TEXT_TEACHER = 0.25  # the TF-IDF cosine's weight in the text-aware teacher, in units of the backbone score's spread
ROWS = ("popularity", "tfidf", "id_vectors", "id_vectors_text_factors", "rarec", "rarec_id_dropout",
        "rarec_text_teacher", "rarec_text_factors", "text_only")
ID_ROWS = ROWS[2:4]
LLM_ROWS = ROWS[4:]
LABELS = {"popularity": "popularity", "tfidf": "TF-IDF of title + categories (user = mean of history), cosine",
          "id_vectors": "ID vectors, no LLM: SASRec, a cold item borrowing its text neighbour's (what the RA-Rec "
                        "row distils)",
          "id_vectors_text_factors": "ID vectors, no LLM: SASRec + {text_rank} text factors at weight {text_weight:g} "
                                     "(what the text-factor row distils)",
          "rarec": "RA-Rec (LLM score; cold items encoded from their text)",
          "rarec_id_dropout": "RA-Rec trained with ID dropout ({id_dropout:.0%} of the batch's items borrow their "
                              "text neighbour's ID)",
          "rarec_text_teacher": "RA-Rec trained with ID dropout ({id_dropout:.0%}) and a text-aware teacher (SASRec "
                                "+ 0.25 × TF-IDF)",
          "rarec_text_factors": "RA-Rec with {text_rank} text factors at weight {text_weight:g} (a cold item's ID "
                                "vector ends in its own text's factors)",
          "text_only": "text-only LLM (`use_id=False`)"}


def cold_split(log: InteractionLog, fraction: float, seed: int, pool: np.ndarray | None = None):
    """(training log, test interactions as (user code, item code), cold item codes), in the full log's codes.
    The cold items are ``fraction`` of the catalogue, drawn from ``pool`` (item codes; default: every item)."""
    rng = np.random.default_rng(seed)
    pool = np.arange(log.n_items) if pool is None else np.asarray(pool)
    cold = np.sort(rng.choice(pool, size=round(fraction * log.n_items), replace=False))
    is_cold = np.zeros(log.n_items, dtype=bool)
    is_cold[cold] = True
    sequences = log.user_sequences()
    test = np.array([(u, s[-1]) for u, s in enumerate(sequences) if len(s) and is_cold[s[-1]]])
    warm = ~is_cold[log.item_codes]
    train = InteractionLog(log.user_codes[warm], log.item_codes[warm], log.users, log.items,
                           None if log.timestamps is None else log.timestamps[warm])
    return train, test, cold


def as_log(pairs: np.ndarray, like: InteractionLog) -> InteractionLog:
    return InteractionLog(pairs[:, 0], pairs[:, 1], like.users, like.items)


def tfidf_items(texts) -> sp.csr_matrix:
    """Each item's title and categories as a unit-length TF-IDF row (n_items, vocabulary)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    documents = [t.render() if t is not None else "" for t in texts]
    return normalize(TfidfVectorizer(sublinear_tf=True).fit_transform(documents)).astype(np.float32)


def tfidf_users(history: sp.csr_matrix, items: sp.csr_matrix) -> sp.csr_matrix:
    """Each user (a row of ``history``: their items) as the unit-length mean of their items' TF-IDF rows."""
    from sklearn.preprocessing import normalize

    history = history.astype(np.float32)
    return normalize(sp.diags(1.0 / np.maximum(history.sum(1).A1, 1.0)) @ history @ items)


def tfidf_scorer(train: InteractionLog, texts):
    """Cosine between each user's mean history TF-IDF vector and every item's."""
    items = tfidf_items(texts)
    users = tfidf_users(train.to_csr(), items)

    def score(user_codes):
        return torch.as_tensor((users[np.asarray(user_codes)] @ items.T).toarray())
    return score


def warm_catalogue(train: InteractionLog, texts, cold: np.ndarray) -> tuple[InteractionLog, dict, dict]:
    """The warm log re-indexed by raw ids (its catalogue holds the warm items only; ``add_items`` brings the cold
    ones), and the warm and the cold items' texts keyed by raw id."""
    raw_items, is_cold = train.items.decode(np.arange(train.n_items)), np.isin(np.arange(train.n_items), cold)
    warm_text = {raw_items[i]: t for i, t in enumerate(texts) if t is not None and not is_cold[i]}
    cold_text = {raw_items[i]: texts[i] for i in cold if texts[i] is not None}
    warm = InteractionLog.from_any(list(zip(train.users.decode(train.user_codes), raw_items[train.item_codes],
                                            train.timestamps)), user_index=train.users)
    return warm, warm_text, cold_text


def checkpoint_folder(args, name: str, seed: int, id_dropout: float, factors: dict) -> Path | None:
    """With ``--checkpoints DIR``, the folder of one LLM row's fit: named by the row's research settings, the split
    and the user preset, so a rerun resumes its own fit (the fit's fingerprint, which covers the research settings
    too, would refuse another's) and each row and setting keeps its own."""
    if getattr(args, "checkpoints", None) is None:
        return None
    settings = f"_text{factors['text_rank']}x{factors['text_weight']:g}" if factors else ""
    epochs, live = budget(args)
    settings += (f"_epochs{epochs}" if epochs != 1 else "") + ("" if live else "_forward_only_negatives")
    id_tokens = getattr(args, "id_tokens", 1)
    settings += f"_idtokens{id_tokens}" if id_tokens != 1 else ""
    settings += "_balanced" if getattr(args, "balance_blocks", False) else ""
    settings += "_balancedcolumns" if getattr(args, "balance_columns", False) else ""
    settings += "_meanpooled" if getattr(args, "mean_pooling", False) else ""
    settings += "_blocktokens" if getattr(args, "block_tokens", False) else ""
    settings += "_borrowedteacher" if borrowed_teacher(name, args) else ""
    samples = getattr(args, "samples", DEFAULT_SAMPLES)
    settings += f"_samples{samples}" if samples != DEFAULT_SAMPLES else ""
    dtype = getattr(args, "llm_dtype", "auto")
    settings += f"_{dtype}" if dtype != "auto" else ""
    settings += "".join(f"_{key.replace('_', '')}{value:g}" for key, value in estimator_options(args).items())
    split = getattr(args, "split", "test")
    return Path(args.checkpoints) / f"{split}_{name}_seed{seed}_users{args.users}_dropout{id_dropout:g}{settings}"


#: Estimator parameters the LLM rows take from the command line (``--max-prompt-tokens``, ``--head-batch-size``,
#: ``--head-lr``; session 55: the warm preset's cheap settings, for the cold rows; ``--distill-temperature``, session
#: 58; ``--prefix-layers``, session 60). A row records, and its checkpoint
#: folder names, only those set away from the estimator's defaults, so earlier rows keep their settings and folders.
ESTIMATOR_OPTIONS = ("max_prompt_tokens", "head_batch_size", "head_lr", "distill_temperature", "prefix_layers")


def estimator_options(args) -> dict:
    """The :data:`ESTIMATOR_OPTIONS` that ``args`` sets away from ``RARecommender``'s defaults."""
    defaults = RARecommender().get_params()
    return {key: getattr(args, key) for key in ESTIMATOR_OPTIONS
            if getattr(args, key, defaults[key]) != defaults[key]}


def budget(args) -> tuple[int, bool]:
    """The LLM rows' alignment epochs and whether their random extra negatives are encoded with gradients
    (``--epochs``, ``--forward-only-negatives``; the estimator's defaults: 1 and True)."""
    return getattr(args, "epochs", 1), not getattr(args, "forward_only_negatives", False)


def row_id_dropout(name: str, args) -> float:
    """The share of a row's training items that borrow their text neighbour's CF part (``AlignmentConfig.id_dropout``):
    ``--id-dropout`` for the two ID-dropout rows, ``--text-factors-id-dropout`` (default 0) for the text-factor row,
    and none for the others."""
    if name in ("rarec_id_dropout", "rarec_text_teacher"):
        return args.id_dropout
    return getattr(args, "text_factors_id_dropout", 0.0) if name == "rarec_text_factors" else 0.0


def borrowed_teacher(name: str, args) -> bool:
    """Whether a row's teacher scores its borrowed-ID items as added items (``--borrowed-teacher``, session 58: the
    research setting ``AlignmentConfig.borrowed_teacher``); only a row trained with ID dropout has any."""
    return getattr(args, "borrowed_teacher", False) and row_id_dropout(name, args) > 0


def row_id_blocks(name: str, args, backbone: CFBackbone) -> tuple[int, int] | None:
    """With ``--block-tokens`` (session 59: the research setting ``PrefixConfig.id_blocks``), the widths of the
    text-factor row's ID-vector blocks, SASRec's embedding then the text factors, each of which gets its own prefix
    token; otherwise None (one token made from the whole vector)."""
    if not getattr(args, "block_tokens", False):
        return None
    if name != "rarec_text_factors":
        raise ValueError(f"--block-tokens splits the text-factor row's ID vectors; the row {name!r} has one block")
    return int(backbone.item_embeddings().shape[1]), int(args.text_rank)


def llm_row(name: str, seed: int, train: InteractionLog, test: InteractionLog, texts, cold, args) -> dict:
    """RA-Rec (with ID dropout and a text-aware teacher, or its text-only twin) fitted on the warm log, then
    ``add_items`` with the cold items' text.

    One SASRec per data set, fitted on the warm log and cached (as the objective study does), is every fit's
    backbone. With ``args.users`` RA-Rec aligns on and encodes the test users plus seeded others up to that
    many (its cost on a CPU is mostly encoding users); the backbone saw every user either way.
    """
    warm, warm_text, cold_text = warm_catalogue(train, texts, cold)
    backbone = warm_sasrec(warm, args)
    fitted_on, scale = warm, 1.0
    if args.users is not None and args.users < warm.n_users:
        test_users = np.zeros(warm.n_users, dtype=bool)
        test_users[test.user_codes] = True  # the same user index: train shares the full log's
        keep = seeded_users(warm.n_users, args.users, keep=test_users)
        fitted_on, scale = warm.subset(keep[warm.user_codes]), warm.n_users / keep.sum()
    samples = getattr(args, "samples", DEFAULT_SAMPLES)  # the prefix-training samples (max_train_samples)
    # the default selection budget, scaled to the full data's count and to the samples asked for, so the tailored
    # selection still offers at least as many as are kept
    fraction = min(1.0, RARecommender().sample_fraction * scale * samples / DEFAULT_SAMPLES)
    id_dropout, borrowed = row_id_dropout(name, args), borrowed_teacher(name, args)
    teacher = TEXT_TEACHER if name == "rarec_text_teacher" else None
    # session 24: the ID vectors of the text-factor row end in TF-IDF factors (a cold item's: its own text's)
    factors = dict(text_rank=args.text_rank, text_weight=args.text_weight) if name == "rarec_text_factors" else {}
    checkpoints = checkpoint_folder(args, name, seed, id_dropout, factors)
    epochs, live = budget(args)
    dtype = getattr(args, "llm_dtype", "auto")
    balanced, columns = getattr(args, "balance_blocks", False), getattr(args, "balance_columns", False)
    text_factors = dict(text_factors=factors["text_rank"], text_factor_weight=factors["text_weight"]) if factors else {}
    rec = RARecommender(backbone=backbone, llm=getattr(args, "llm", None), device=args.device, llm_dtype=dtype,
                        random_state=seed, verbose=1, use_id=(name != "text_only"), sample_fraction=fraction,
                        checkpoint_dir=checkpoints, epochs=epochs, n_id_tokens=getattr(args, "id_tokens", 1),
                        max_train_samples=samples, balance_id_blocks=balanced, random_negative_gradients=live,
                        **text_factors, **estimator_options(args))
    shorter = getattr(args, "continue_from", None)  # a finished fit of this row and setting with fewer epochs
    if shorter is not None and checkpoints is None:
        raise ValueError("--continue-from needs --checkpoints (the longer fit's own folder is made there)")
    start, resumed = time.perf_counter(), checkpoints is not None and (checkpoints.exists() or shorter is not None)
    pooling, blocks = "mean" if getattr(args, "mean_pooling", False) else "last", row_id_blocks(name, args, backbone)
    with continued_from(shorter, checkpoints), prefix_overrides(pooling=pooling, id_blocks=blocks), \
            alignment_overrides(id_dropout=id_dropout, borrowed_teacher=borrowed, balance_id_columns=columns), \
            text_teacher(teacher), \
            cached_prompt_states(getattr(args, "prompt_cache", None)):
        rec.fit(fitted_on, item_text=warm_text, resume=resumed)
    if getattr(args, "keep_models", None) is not None:  # the warm model, for cold_prefixes.py
        rec.save(args.keep_models / f"{name}_seed{seed}")
    rec.add_items(cold_text)
    held_out = list(zip(test.users.decode(test.user_codes), test.items.decode(test.item_codes)))
    found = rec.evaluate(held_out, ks=KS, metrics=METRICS, per_user=True)
    return {"row": name, "seed": seed, "seconds": time.perf_counter() - start, "id_dropout": id_dropout,
            "text_teacher": teacher, **factors, **({"epochs": epochs} if epochs != 1 else {}),
            **({} if live else {"live_random_negatives": False}), **({"resumed": True} if resumed else {}),
            **({"n_id_tokens": rec.n_id_tokens} if rec.n_id_tokens != 1 else {}),
            **({"balance_id_blocks": True} if balanced else {}), **({"pooling": pooling} if pooling != "last" else {}),
            **({"borrowed_teacher": True} if borrowed else {}), **({"id_blocks": list(blocks)} if blocks else {}),
            **({"balance_id_columns": True} if columns else {}),
            **({"max_train_samples": samples} if samples != DEFAULT_SAMPLES else {}),
            **({"llm_dtype": dtype} if dtype != "auto" else {}), **estimator_options(args),
            "factor_checks": {key: rec.training_log_[0].get(key) for key in ("cooccurrence_factors", "text_factors")},
            "users": int(len(np.unique(fitted_on.user_codes))), **mean_and_per_user(found)}


def warm_sasrec(warm: InteractionLog, args) -> CFBackbone:
    """The one SASRec of a split, fitted on its warm log and cached (``args.cache``, else the test split's folder)."""
    return shared_sasrec(warm, getattr(args, "cache", None) or HERE / "output" / f"cold_items_sasrec_{args.data.name}")


def id_vectors_row(name: str, train: InteractionLog, test: InteractionLog, texts, cold, args) -> dict:
    """The catalogue ranked by the ID vectors alone, no LLM: what an RA-Rec row's towers are taught to reproduce,
    so the most its LLM score can reach by copying them. The cached warm SASRec's user and item vectors; a cold
    item borrows its nearest warm item's by text, as ``add_items`` gives it. ``id_vectors_text_factors`` appends
    ``args.text_rank`` TF-IDF factors of the warm items' texts (``rarec.cf.TextFactors``, scaled to
    ``args.text_weight`` x SASRec's score spread as the fit scales them; a cold item's are its own text's)."""
    from rarec.align._cold_items import with_cold_items
    from rarec.cf import TextFactors

    warm, warm_text, cold_text = warm_catalogue(train, texts, cold)
    backbone = warm_sasrec(warm, args)
    catalogue = list(warm.items.decode(np.arange(warm.n_items))) + list(cold_text)  # raw ids, cold ones last
    all_text = [warm_text.get(i) for i in catalogue[:warm.n_items]] + list(cold_text.values())
    items = with_cold_items(backbone.item_embeddings().float(), all_text)
    sequences = warm.user_sequences()
    window = RARecommender().max_history  # the backbone reads what the fit's towers give it
    factors, row = None, {}
    if name == "id_vectors_text_factors":
        histories = [s for s in sequences if len(s)]
        factors = TextFactors.fit(all_text[:warm.n_items], args.text_rank).scaled_to(
            args.text_weight, histories, lambda rows: backbone.score_histories([histories[r][-window:] for r in rows]))
        items = torch.cat([items, factors.for_texts(all_text).float()], dim=1)
        row = {"text_rank": args.text_rank, "text_weight": args.text_weight}
    cf_scale, text_scale = getattr(args, "cold_scale", (1.0, 1.0))  # cold_borrowing.py --scales; not a product rule
    if (cf_scale, text_scale) != (1.0, 1.0):
        width = backbone.item_embeddings().shape[1]
        items[warm.n_items:, :width] *= cf_scale
        items[warm.n_items:, width:] *= text_scale
        row["cold_scale"] = [cf_scale, text_scale]
    where = {raw: i for i, raw in enumerate(catalogue)}
    test_items = np.array([where.get(raw, -1) for raw in test.items.decode(test.item_codes)])
    # as the LLM rows' evaluate, which leaves out users it never saw and cold items with no text (never added)
    known = np.array([len(sequences[u]) > 0 for u in test.user_codes]) & (test_items >= 0)
    shape, trained = (warm.n_users, len(where)), warm.to_csr()
    held_out = sp.csr_matrix((np.ones(known.sum()), (test.user_codes[known], test_items[known])), shape=shape)
    seen = sp.csr_matrix((trained.data, trained.indices, trained.indptr), shape=shape)

    def score(user_codes):
        histories = [sequences[u] for u in user_codes]
        users = backbone.user_embeddings([h[-window:] for h in histories])[:, 0].float()
        if factors is not None:
            users = torch.cat([users, factors.users(histories).float()], dim=1)
        return users @ items.T

    start = time.perf_counter()
    found = full_ranking_metrics(score, held_out, seen, ks=KS, metrics=METRICS, per_user=True)
    found["users"] = test.users.decode(found["users"])
    return {"row": name, "seed": 0, "seconds": time.perf_counter() - start, **row, **mean_and_per_user(found)}


def validation_split(train: InteractionLog, fraction: float):
    """The same protocol inside the test split's training log, to choose settings without the test users: as
    many items again, drawn (seed ``SPLIT_SEED + 1``) among the warm ones, are held out of it; the test split's
    cold items stay out of both sides, never seen."""
    warm_items = np.unique(train.item_codes)
    return cold_split(train, fraction, SPLIT_SEED + 1, pool=warm_items)


def results_path(data: Path, split: str = "test") -> Path:
    return HERE / "results" / f"cold_items_{data.name}{'_valid' if split == 'valid' else ''}.json"


def run(args) -> dict:
    log, text = read_dataset(args.data)
    texts = text.align(log.items, on_unknown="ignore")
    train, test_pairs, cold = cold_split(log, COLD_FRACTION, SPLIT_SEED)
    if args.split == "valid":
        train, test_pairs, cold = validation_split(train, COLD_FRACTION)
        args.cache = HERE / "output" / f"cold_items_valid_sasrec_{args.data.name}"
    test = as_log(test_pairs, log)
    print(f"{args.data.name}: {len(cold)} cold items, {len(test)} test users, {len(train)} training interactions",
          file=sys.stderr)
    path = results_path(args.data, args.split)
    result = json.loads(path.read_text()) if path.exists() else {"rows": []}
    result.update(dataset=args.data.name, cold_items=len(cold), test_users=len(test), items=log.n_items,
                  train_interactions=len(train),
                  machine=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    seen = train.to_csr()
    for name in args.rows.split(","):
        for seed in (map(int, args.seeds.split(",")) if name in LLM_ROWS else [0]):
            start = time.perf_counter()
            if name in ("popularity", "tfidf"):
                scorer = PopularityRecommender().fit(train).score_users if name == "popularity" \
                    else tfidf_scorer(train, texts)
                found = full_ranking_metrics(scorer, test, seen, ks=KS, metrics=METRICS, per_user=True)
                found["users"] = log.users.decode(found["users"])  # ids, as the LLM rows' evaluate gives them
                row = {"row": name, "seed": seed, "seconds": time.perf_counter() - start, **mean_and_per_user(found)}
            elif name in ID_ROWS:
                row = id_vectors_row(name, train, test, texts, cold, args)
            else:
                row = llm_row(name, seed, train, test, texts, cold, args)
            print(json.dumps({k: v for k, v in row.items() if k != "per_user"}), file=sys.stderr)
            result["rows"] = [r for r in result["rows"] if setting(r) != setting(row)] + [row]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(results_json(result))
    return result


def setting(row: dict) -> tuple:
    """What tells two result rows apart: a row re-run with the same setting replaces the old one."""
    return (row["row"], row.get("seed"), row.get("text_rank"), row.get("text_weight"), row.get("epochs", 1),
            row.get("live_random_negatives", True), row.get("n_id_tokens", 1), row.get("balance_id_blocks", False),
            row.get("id_dropout", 0.0), row.get("pooling", "last"), row.get("max_train_samples", DEFAULT_SAMPLES),
            row.get("llm_dtype", "auto"), tuple((key, row[key]) for key in ESTIMATOR_OPTIONS if key in row),
            row.get("users"), row.get("borrowed_teacher", False), tuple(row.get("id_blocks", ())),
            row.get("balance_id_columns", False))


def render(result: dict, split: str = "test") -> str:
    def cell(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 \
            else f"{values[0]:.4f}"

    if split == "valid":
        title, held = ("### Cold items, validation split (to choose settings on)", f"{result['cold_items']:,} "
                       f"more items (seed {SPLIT_SEED + 1}, among the warm ones) held out of the test split's "
                       "training log, which also lacks the test split's cold items; ")
    else:
        title, held = ("## Cold items (Amazon Beauty): ranking items nobody has interacted with",
                       f"{result['cold_items']:,} of {result['items']:,} items (10%, seed {SPLIT_SEED}) held out of "
                       "training entirely; ")
    lines = [title, "", f"Written by `benchmarks/cold_items.py --split {split}` on {result['machine']}. " + held +
             f"{result['test_users']:,} {'validation' if split == 'valid' else 'test'} users, each with a cold item "
             "as their last interaction; the whole catalogue ranked, the user's training items excluded. LLM rows: "
             "mean ± std over the seeds run" + (f"; each aligns on {PRESET_USERS:,} users (every test user and "
                                                "seeded others; SASRec saw them all) unless it names another count"
                                                if any("users" in r for r in result["rows"]) else "") + ".", "",
             "| row | seeds | HR@10 | NDCG@10 | HR@100 | NDCG@100 | wall (s) |", "|---|---|---|---|---|---|---|"]
    for name in ROWS:
        settings = {}  # rows of one setting, its seeds together
        for r in sorted((r for r in result["rows"] if r["row"] == name), key=lambda r: setting(r)[2:]):
            settings.setdefault(setting(r)[2:], []).append(r)
        for rows in settings.values():
            lines.append(f"| {label(name, rows)} | {len(rows)} | " + " | ".join(
                cell([r[m] for r in rows]) for m in ("hr@10", "ndcg@10", "hr@100", "ndcg@100"))
                + f" | {statistics.mean(r['seconds'] for r in rows):.0f}"
                + resumed_mark(rows) + " |")
    lines[2] += resumed_note(result["rows"])
    return "\n".join(lines + paired_lines(result, "validation" if split == "valid" else "test")) + "\n"


def label(name: str, rows: list[dict]) -> str:
    """A row's name in the tables (with its ID-dropout share and text teacher's weight where it has them)."""
    first = rows[0]
    text = LABELS[name].format(id_dropout=first.get("id_dropout", 0.0), text_teacher=first.get("text_teacher"),
                               text_rank=first.get("text_rank", 0), text_weight=first.get("text_weight", 0.0))
    if first.get("epochs", 1) != 1:
        text += f", {first['epochs']} alignment epochs"
    if first.get("n_id_tokens", 1) != 1:
        text += f", {first['n_id_tokens']} ID tokens per vector"
    if first.get("balance_id_blocks", False):
        text += ", ID blocks balanced at the projector's input"
    if first.get("balance_id_columns", False):
        text += ", each block's columns balanced too"
    if first.get("pooling", "last") != "last":
        text += f", LLM vectors {first['pooling']}-pooled over the prompt's tokens"
    if "id_blocks" in first:
        text += ", one ID token per block (SASRec's part, the text factors)"
    if first.get("max_train_samples", DEFAULT_SAMPLES) != DEFAULT_SAMPLES:
        text += f", {first['max_train_samples']:,} prefix-training samples"
    if first.get("llm_dtype", "auto") != "auto":
        text += f", LLM in {first['llm_dtype']}"
    if "max_prompt_tokens" in first:
        text += f", {first['max_prompt_tokens']}-token prompts"
    if "head_batch_size" in first or "head_lr" in first:
        text += f", heads in batches of {first.get('head_batch_size', 'the alignment batch')} at lr " \
                f"{first.get('head_lr', RARecommender().head_lr):g}"
    if "distill_temperature" in first:
        text += f", teacher at temperature {first['distill_temperature']:g}"
    if "prefix_layers" in first:
        text += f", prefixes in the top {first['prefix_layers']} layers"
    if first.get("users") not in (None, PRESET_USERS):
        text += f", aligned on {first['users']:,} users"
    if name == "rarec_text_factors" and first.get("id_dropout", 0.0) > 0:
        text += (f", ID dropout ({first['id_dropout']:.0%} of the batch's items borrow their text neighbour's "
                 "SASRec part)")
    if first.get("borrowed_teacher", False):
        text += ", the teacher scoring borrowed-ID items by their borrowed ID vectors (heads too)"
    return text + ("" if first.get("live_random_negatives", True) else ", random negatives forward-only")


def same_users(per_user: dict, users: list) -> dict:
    """``per_user``'s metrics for ``users`` (ids), in that order: an LLM row leaves out the few test users with no
    interaction on a warm item (unknown to the fit), which the TF-IDF row ranks from an empty history."""
    where = {user: i for i, user in enumerate(per_user["users"])}
    rows = [where[user] for user in users]
    return {key: [values[i] for i in rows] for key, values in per_user.items()}


def paired_lines(result: dict, who: str = "test") -> list[str]:
    """Each ID-vector and LLM row that kept per-user metrics against TF-IDF on the same ``who`` users: HR@100's
    ratio of means (the issue's target is 1.2x) and the per-user differences ± one standard error, the seeds
    averaged per user first."""
    tfidf = next((r["per_user"] for r in result["rows"] if r["row"] == "tfidf" and "per_user" in r), None)
    runs = {}  # (row, its setting): the runs of its seeds
    for r in result["rows"]:
        if r["row"] in ID_ROWS + LLM_ROWS and "per_user" in r:
            runs.setdefault((r["row"], setting(r)[2:]), []).append(r)
    runs = {key: runs[key] for key in sorted(runs, key=lambda key: [(v is None, v if isinstance(v, tuple) else v or 0)
                                                               for v in key[1]])}  # a tuple sorts among tuples
    # a row whose per-user lists were lost keeps the figures they gave (session 18), used when it has no other seed
    kept = {name: [r["paired_with_tfidf"] for r in result["rows"] if r["row"] == name and "paired_with_tfidf" in r]
            for name in LLM_ROWS}
    if tfidf is None or not any(runs.values()) and not any(kept.values()):
        return []
    lines = ["", f"Paired with TF-IDF on the same {who} users (row − TF-IDF per user, the seeds averaged per user "
             "first; ± one standard error; the users the LLM rows evaluate):", "",
             "| row | seeds | HR@100 ÷ TF-IDF's | Δ HR@100 | Δ NDCG@10 | users better / worse (HR@100) |",
             "|---|---|---|---|---|---|"]
    for name in ID_ROWS + LLM_ROWS:
        measured = [rows for key, rows in runs.items() if key[0] == name]
        if not measured and kept.get(name):  # its per-user lists were lost
            (paired,) = kept[name]
            lines.append(f"| {label(name, [{}])} | 1 | {paired['ratio']:.2f}× | {paired['hr@100'][0]:+.4f} ± "
                         f"{paired['hr@100'][1]:.4f} | {paired['ndcg@10'][0]:+.4f} ± {paired['ndcg@10'][1]:.4f} | "
                         f"{paired['better_worse'][0]} / {paired['better_worse'][1]} |")
        for rows in measured:
            per_user = [r["per_user"] for r in rows]
            same = same_users(tfidf, per_user[0]["users"])
            hr, ndcg = (paired_difference(per_user, same, metric) for metric in ("hr@100", "ndcg@10"))
            ratio = np.mean([np.mean(p["hr@100"]) for p in per_user]) / np.mean(same["hr@100"])
            lines.append(f"| {label(name, rows)} | {len(per_user)} | {ratio:.2f}× | {hr['mean_difference']:+.4f} ± "
                         f"{hr['standard_error']:.4f} | {ndcg['mean_difference']:+.4f} ± {ndcg['standard_error']:.4f} "
                         f"| {hr['wins']} / {hr['losses']} |")
    return lines


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The command line of this script (``cold_calibration.py`` reads the LLM row's options from it too)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/amazon-beauty")
    parser.add_argument("--rows", default="popularity,tfidf", help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the LLM rows")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--users", type=int, default=None,
                        help="LLM rows: align on the test users plus seeded others up to this many (CPU preset)")
    parser.add_argument("--id-dropout", type=float, default=0.5,
                        help="the share of training items with a borrowed ID prefix in the rarec_id_dropout and "
                             "rarec_text_teacher rows")
    parser.add_argument("--text-factors-id-dropout", type=float, default=0.0,
                        help="rarec_text_factors: the share of the batch's items whose SASRec part is borrowed from "
                             "their text neighbour while their own text factors stay, as a cold item's ID vector is "
                             "built (the research setting AlignmentConfig.id_dropout; default 0)")
    parser.add_argument("--borrowed-teacher", action="store_true",
                        help="rows trained with ID dropout: the teacher scores a borrowed-ID item by its borrowed ID "
                             "vector, as an added item's is scored, and the output heads train with the same share of "
                             "borrowed items (the research setting AlignmentConfig.borrowed_teacher, session 58)")
    parser.add_argument("--text-rank", type=int, default=512,
                        help="the rank of the text factors of the id_vectors_text_factors and rarec_text_factors rows")
    parser.add_argument("--text-weight", type=float, default=0.25, help="their weight, in units of SASRec's score "
                        "spread (the research setting's default is 0.25)")
    parser.add_argument("--keep-models", type=Path, default=None,
                        help="LLM rows: also save each fitted model (before add_items) in DIR/<row>_seed<seed>, so "
                             "that cold_prefixes.py can try other ID prefixes for the cold items without refitting")
    parser.add_argument("--split", choices=("test", "valid"), default="test",
                        help="valid: the same protocol inside the test split's training log (its own SASRec, "
                             "cached), to choose settings on; results in cold_items_<data>_valid.json")
    parser.add_argument("--prompt-cache", type=Path, default=HERE / "output" / "prompt_states",
                        help="LLM rows: where the fits' once-per-fit prompt pass is kept for later seeds and reruns "
                             "(common.cached_prompt_states; the same results, about 24 minutes less per fit on a "
                             "2-core CPU); 'none' turns it off")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="LLM rows: checkpoint each fit under DIR (one folder per row, seed and setting) and "
                             "resume a stopped one from there when the row is run again; delete a folder to refit "
                             "it (after a code change, always)")
    parser.add_argument("--epochs", type=int, default=1, help="LLM rows: alignment epochs (the estimator's epochs)")
    parser.add_argument("--continue-from", type=Path, default=None,
                        help="LLM rows, with --checkpoints and one row and seed: start from the end of the finished "
                             "fit checkpointed in this folder (the same row, seed and settings with fewer --epochs) "
                             "instead of from scratch; exact, as the learning rate is constant (common.continued_from)")
    parser.add_argument("--id-tokens", type=int, default=1,
                        help="LLM rows: prefix tokens per ID vector (the estimator's n_id_tokens; default 1)")
    parser.add_argument("--balance-blocks", action="store_true",
                        help="LLM rows: each projector scales the ID vectors' blocks (SASRec's embedding, the text "
                             "factors) to equal shares of their variance (the estimator's "
                             "balance_id_blocks)")
    parser.add_argument("--balance-columns", action="store_true",
                        help="LLM rows: as --balance-blocks, and inside each block every column gets an equal share "
                             "of the block's variance too (the research setting AlignmentConfig.balance_id_columns, "
                             "session 60)")
    parser.add_argument("--mean-pooling", action="store_true",
                        help="LLM rows: each tower's vector is the mean of its prompt tokens' final LLM states "
                             "instead of the last token's (the research setting PrefixConfig.pooling)")
    parser.add_argument("--block-tokens", action="store_true",
                        help="the text-factor row: one prefix token made from SASRec's part of the ID vector and one "
                             "from its text factors, instead of one from the whole vector (the research setting "
                             "PrefixConfig.id_blocks)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help="LLM rows: prefix-training samples per fit (the estimator's max_train_samples; default "
                             f"{DEFAULT_SAMPLES:,}); the tailored selection's budget grows in proportion")
    parser.add_argument("--llm-dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="LLM rows: the estimator's llm_dtype (auto: fp32 on a CPU); bfloat16 runs a step at "
                             "about 0.63x the cost on a CPU with AMX units and ranked as fp32 did on ML-100K")
    parser.add_argument("--max-prompt-tokens", type=int, default=RARecommender().max_prompt_tokens,
                        help="LLM rows: the estimator's max_prompt_tokens (16 makes a step several times cheaper; "
                             "the warm preset's cheap rows use it)")
    parser.add_argument("--head-batch-size", type=int, default=None,
                        help="LLM rows: the estimator's head_batch_size (default: the alignment batch)")
    parser.add_argument("--head-lr", type=float, default=RARecommender().head_lr,
                        help="LLM rows: the estimator's head_lr (batch 64 with 4e-4 trains the heads about 4x faster)")
    parser.add_argument("--distill-temperature", type=float, default=RARecommender().distill_temperature,
                        help="LLM rows: the estimator's distill_temperature (below 1 sharpens the teacher's softmax "
                             "toward the top of its ranking)")
    parser.add_argument("--prefix-layers", type=int, default=RARecommender().prefix_layers,
                        help="LLM rows: the estimator's prefix_layers (the top layers that get prefixes; default "
                             f"{RARecommender().prefix_layers})")
    parser.add_argument("--forward-only-negatives", action="store_true",
                        help="LLM rows: encode the random extra negatives without gradients (the estimator's "
                             "random_negative_gradients=False: cheaper steps)")
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    return parser


def prepare(args) -> None:
    """After parsing: ``--prompt-cache none`` as None, and the fit's log shown."""
    if str(args.prompt_cache) == "none":
        args.prompt_cache = None
    # the fit's own checks (which ID-vector factors it keeps, and why) show within minutes, not after the whole row
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("rarec").setLevel(logging.INFO)


def main() -> None:
    args = build_parser().parse_args()
    prepare(args)
    unknown = set(args.rows.split(",")) - set(ROWS)
    if unknown:
        sys.exit(f"unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    path = results_path(args.data, args.split)
    result = json.loads(path.read_text()) if args.render else run(args)
    marker = "cold-items" + ("-valid" if args.split == "valid" else "")
    write_section(args.output, render(result, args.split), marker=marker)
    print(f"wrote {args.output} and {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
