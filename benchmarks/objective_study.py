"""Which training objective lets the LLM score catch up with its backbone? Negatives, logQ, geometry, budget.

    python benchmarks/objective_study.py --data ../shared/data/ml-100k --variants "baseline;logq;catalogue"
    python benchmarks/objective_study.py --render        # docs section from the saved JSON
    python benchmarks/objective_study.py ... --checkpoints benchmarks/output/checkpoints   # resumable fits

One SASRec backbone (seed 0) is fitted on the split RARecommender makes
internally (each user's last training item held out for validation) and
cached under benchmarks/output/, then shared by every RA-Rec fit
(``backbone=``), so the rows differ only in the alignment stage. Each
variant runs for each seed; a row reports the LLM score alone (the paper's
ranking): validation NDCG@10 (the best epoch, as early stopping sees it)
and test NDCG@10 / HR@100 over the full catalogue, with popularity and the
backbone beside it.

Results: benchmarks/results/objective_study.json for ML-100K,
objective_study_<data folder>.json otherwise (rows are appended as they
finish; a variant already there for a seed is skipped unless --again). Each
data set has its own docs section.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from common import (DATASET_TITLES, SETTINGS, alignment_overrides, cached_prompt_states, dataset_suffix,
                    prefix_overrides, read_dataset, results_json, resumed_mark, resumed_note,
                    write_section)

import rarec._estimator as estimator
from rarec import RARecommender
from rarec.cf import CFBackbone, CooccurrenceFactors, PopularityRecommender, TrainingConfig, make_backbone
from rarec.metrics import full_ranking_metrics, paired_difference
from rarec.model_selection import leave_last_out

HERE = Path(__file__).resolve().parent
#: Where the fits keep their once-per-fit prompt pass for later fits (``common.cached_prompt_states``).
PROMPT_CACHE = HERE / "output" / "prompt_states"
#: The CPU preset of alignment_quality.py (1% of the training samples, one epoch) with the objective this study
#: started from (no random extras, no distillation, no output heads); each variant says what it changes.
BASE = dict(sample_fraction=0.01, epochs=1, n_random_negatives=0, distill=0.0, head_epochs=0, cooccurrence_teacher=0.0,
            cooccurrence_factors=0, history_pooling=False)
#: The estimator's default objective and CPU budget, as changes from BASE (the variants named "default ..." change
#: one thing more).
DEFAULT_OBJECTIVE = dict(sample_fraction=0.05, epochs=1, negatives="in_batch", logq=True, n_random_negatives=64,
                         distill=0.9)
#: (name, what changes from BASE). "baseline" is the objective before this study (in-batch softmax, no logQ).
VARIANTS = {
    "baseline": dict(negatives="in_batch", logq=False),
    "logq": dict(negatives="in_batch", logq=True),
    "catalogue": dict(negatives="catalogue"),
    "catalogue (bank refreshed every 10 steps)": dict(negatives="catalogue", bank_refresh=10),
    "catalogue (bank never refreshed)": dict(negatives="catalogue", bank_refresh=10**6),
    "catalogue (random selection)": dict(negatives="catalogue", selection="random"),
    "catalogue (5% x 3 epochs)": dict(negatives="catalogue", sample_fraction=0.05, epochs=3),
    "catalogue + distill 1.0": dict(negatives="catalogue", distill=1.0),
    "catalogue + distill 0.9": dict(negatives="catalogue", distill=0.9),
    "catalogue + distill 0.5": dict(negatives="catalogue", distill=0.5),
    "logq + distill 0.9": dict(negatives="in_batch", logq=True, distill=0.9),
    "logq + 64 random + distill 0.9": dict(negatives="in_batch", logq=True, n_random_negatives=64, distill=0.9),
    "logq + 64 random": dict(negatives="in_batch", logq=True, n_random_negatives=64),
    # the estimator's objective (in-batch + logQ + 64 random + distill 0.9) at the CPU default budget (one epoch)
    # and at the GPU preset's (three)
    "default (5% x 1 epoch)": DEFAULT_OBJECTIVE,
    "default objective, 5% x 3 epochs": dict(DEFAULT_OBJECTIVE, epochs=3),
    # looking for a margin over the backbone (session 8): more distinct samples, a sharper or lighter teacher
    "default objective, 10% capped at 5,000 samples": dict(DEFAULT_OBJECTIVE, sample_fraction=0.10),
    "default objective, 10% x 1 epoch (no cap)": dict(DEFAULT_OBJECTIVE, sample_fraction=0.10,
                                                      max_train_samples=None),
    "default, teacher temperature 0.5": dict(DEFAULT_OBJECTIVE, distill_temperature=0.5),
    "default, distill 0.7": dict(DEFAULT_OBJECTIVE, distill=0.7),
    # a wider path for the ID signal (session 10): the probe's linear towers copy 93% of SASRec on Beauty where
    # the LLM towers reach 56%, so what is lost lies between the CF vector and the LLM's output
    "default, 4 ID tokens": dict(DEFAULT_OBJECTIVE, n_id_tokens=4),
    "default, prefixes in 16 layers": dict(DEFAULT_OBJECTIVE, prefix_layers=16),
    # is the prompt's text what the ID signal loses against? 4-token prompts leave almost none ("Item: <first
    # word>"; the user prompt's last words, "for this user.")
    "default, 4-token prompts": dict(DEFAULT_OBJECTIVE, max_prompt_tokens=4),
    # Beauty's item prompts average 36 tokens (ML-100K's about 15) and its user prompts fill the 64-token cap: does
    # the text drown the ID tokens there? 16-token prompts are ML-100K's item length (session 12)
    "default, 16-token prompts": dict(DEFAULT_OBJECTIVE, max_prompt_tokens=16),
    # the other way: more of the history in words (10 titles in up to 128 tokens instead of 5 in 64)
    "default, 10 titles in 128-token prompts": dict(DEFAULT_OBJECTIVE, n_history_titles=10, max_prompt_tokens=128),
    # does the paper's alignment loss (ID prefixes pulled toward the text's keys/values) hold the ID path back?
    "default, no alignment loss": dict(DEFAULT_OBJECTIVE, align_weight=0.0),
    # session 13: a linear head per tower trained after the prefixes on their fixed vectors (output_head.py found
    # it lifts the fitted towers to SASRec's validation NDCG@10 on ML-100K); the estimator's default since then
    "default + output heads (30 epochs)": dict(DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=0),
    # session 15: the heads with a residual MLP (1024 hidden units); output_head.py found it raises validation on
    # fixed vectors of both ML-100K and Beauty
    "default + output heads with a residual MLP (1024)": dict(DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024),
    # session 15: on fixed vectors the heads lost with half of their samples, so give them more than the prefixes'
    "default + MLP heads + 5,000 head samples": dict(DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024,
                                                     head_samples=5000),
    # session 16: on fixed vectors 256 hidden units matched 1,024 in half the heads' training time (the default
    # fit sits at the 30-minute budget)
    "default + MLP heads (256)": dict(DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=256),
    # session 17: the default loses to SASRec on users with long histories (paired_by_history.py), whose user prompt
    # holds 5 of their titles; twice the titles and tokens (about twice the LLM's cost per prompt). Before the
    # heads (session 12, the variant above) the same prompts tied with the default.
    "default + MLP heads, 10 titles in 128-token prompts": dict(DEFAULT_OBJECTIVE, head_epochs=30,
                                                                n_history_titles=10, max_prompt_tokens=128),
    # session 20: the estimator's new default. On fixed vectors (output_head.py) the MLP heads distilled from SASRec
    # + 0.25 x EASE and reading the history's mean item vector passed SASRec on test HR@100 (three head seeds)
    "default + co-occurrence teacher + pooled history (session 20)": dict(
        DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024, cooccurrence_teacher=0.25, history_pooling=True),
    # session 23: the estimator's new default. The prototype below (EASE_FACTORS) as the library builds it: EASE's
    # 64 leading factors appended to the ID vectors (``cooccurrence_factors``) instead of the separate EASE teacher
    "default + co-occurrence factors (session 23)": dict(
        DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024, cooccurrence_teacher=0.25, cooccurrence_factors=64,
        history_pooling=True),
    # session 23: EASE truncated to 256 directions ranks ML-100K's validation items at 0.1351 with no training (64:
    # 0.1271); does a student copy the richer ID score as closely?
    "default + co-occurrence factors, rank 256": dict(
        DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024, cooccurrence_teacher=0.25, cooccurrence_factors=256,
        history_pooling=True),
}
#: The GPU preset (the estimator's ``epochs`` docstring): its defaults with three alignment epochs. Meant for
#: ``--device cuda`` on every user (session 32, the first lent GPU since the default changed).
VARIANTS["default (session 23), 3 epochs (GPU preset)"] = dict(VARIANTS["default + co-occurrence factors (session 23)"],
                                                               epochs=3)
#: Session 9's lead on Beauty: 5,000 samples touch each of its 12,101 items about twice as a candidate. Four times
#: the default's 5% with no cap (the row records how many that is) is a GPU budget.
VARIANTS["default (session 23), 20% of the samples, no cap (GPU)"] = dict(
    VARIANTS["default + co-occurrence factors (session 23)"], sample_fraction=0.20, max_train_samples=None)
#: Session 32's GPU preset was still rising at its third epoch (validation NDCG@10 0.0376, 0.0475, 0.0513 by
#: epoch): the same samples for twice as long (early stopping still keeps the best epoch).
VARIANTS["default (session 23), 6 epochs (GPU)"] = dict(VARIANTS["default + co-occurrence factors (session 23)"],
                                                      epochs=6)
#: The longest of these that fits one 10-minute command on an H200 when SASRec is already fitted: session 32's
#: 380 s fit spent about 30 s an epoch training and about as long validating every user (tools/offline_gpu).
VARIANTS["default (session 23), 5 epochs (GPU)"] = dict(VARIANTS["default + co-occurrence factors (session 23)"],
                                                      epochs=5)
#: Session 34: on a CPU with AMX-BF16 units an alignment step took 0.63x as long with the LLM in bf16
#: (step_cost.py --compare dtype); does the ranking keep its quality?
VARIANTS["default (session 23), LLM in bf16"] = dict(VARIANTS["default + co-occurrence factors (session 23)"],
                                                     llm_dtype="bfloat16")
#: Session 56: the text factors and balanced blocks became estimator parameters, measured on Amazon Beauty only; on
#: ML-100K (movie titles and genres) at the default budget, in bf16 beside the row above.
VARIANTS["default (session 23), LLM in bf16, 512 text factors at 0.25, ID blocks balanced"] = dict(
    VARIANTS["default (session 23), LLM in bf16"], text_factors=512, balance_id_blocks=True)
#: Session 58: the random extra negatives forward-only (``random_negative_gradients=False``) on the bf16 default,
#: three seeds beside its three: does the cheaper step keep ML-100K's ranking, so that it may become the default?
VARIANTS["default (session 23), LLM in bf16, forward-only random negatives"] = dict(
    VARIANTS["default (session 23), LLM in bf16"], random_negative_gradients=False)
#: Sessions 40-41: on the cold split twice the prefix-training samples lifted the cold HR@100 by 0.015 (2.9 SE) and
#: the warm validation NDCG@10 (0.0440 -> 0.0498). The same lever on Beauty's warm CPU preset, from its best row
#: (session 20's, 0.0476): twice the samples and twice the selection budget (about 2x the fit's training time).
SAMPLES_10000 = "default + co-occurrence teacher + pooled history (session 20), 10,000 samples"
_SESSION_20 = VARIANTS["default + co-occurrence teacher + pooled history (session 20)"]
VARIANTS[SAMPLES_10000] = dict(_SESSION_20, sample_fraction=2 * _SESSION_20["sample_fraction"],
                               max_train_samples=10_000)
#: Session 42: on this session's CPU (AMX-BF16 units) the cold split's 20,000-sample row ran its epoch in bf16 at
#: about 1.5 s a step and matched the fp32 row's validation after the epoch (0.0482 against 0.0477), so the
#: warm preset's samples lever runs in bf16 too (the ML-100K default ranked as fp32 did in bf16, three seeds).
SAMPLES_10000_BF16 = SAMPLES_10000 + ", LLM in bf16"
VARIANTS[SAMPLES_10000_BF16] = dict(VARIANTS[SAMPLES_10000], llm_dtype="bfloat16")
#: Session 42: that row reached 0.97x / 1.01x its SASRec (test NDCG@10 / HR@100), and on the cold split 20,000
#: samples (every next-item sample of its 4,000 users) lifted the warm validation again (0.0498 -> 0.0557).
SAMPLES_20000_BF16 = "default + co-occurrence teacher + pooled history (session 20), 20,000 samples, LLM in bf16"
_SAMPLES_20000_BF16 = dict(sample_fraction=4 * _SESSION_20["sample_fraction"], max_train_samples=20_000,
                           llm_dtype="bfloat16")
VARIANTS[SAMPLES_20000_BF16] = dict(VARIANTS[SAMPLES_10000_BF16], **_SAMPLES_20000_BF16)

#: Variants whose distillation teacher also knows the text (session 12): the backbone's logits plus this weight
#: times the TF-IDF cosine of each sample's history and each candidate, in units of the backbone score's spread
#: (the probe's hybrid teacher; on Beauty the same fusion with no training is +16% over SASRec). It enters
#: through train_alignment's ``extra_teacher`` hook; the estimator's parameters are the default's.
TEXT_TEACHERS = {"default, hybrid teacher (SASRec + 0.25 x TF-IDF)": 0.25}
VARIANTS.update({name: DEFAULT_OBJECTIVE for name in TEXT_TEACHERS})

#: Variants whose teacher adds item co-occurrence (session 20): the backbone's logits plus this weight times the
#: EASE score of the sample's history (``rarec.cf.EASE``, L2 200), in the same units. Fused without training,
#: SASRec + 0.25 x EASE ranks ML-100K's validation users well above SASRec (0.1294 against 0.1161 NDCG@10): a
#: student that copies that teacher as closely as it copies SASRec would pass its backbone. The estimator's default
#: otherwise.
EASE_TEACHERS = {"default + teacher SASRec + 0.25 x EASE": 0.25}
VARIANTS.update({name: dict(DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024) for name in EASE_TEACHERS})

#: Variants that change a trainer setting which is not an estimator parameter (``AlignmentConfig`` fields), on the
#: estimator's default. Session 19: ID dropout (a share of the batch's items borrow their text neighbour's CF
#: embedding as ID prefix, as add_items gives a cold item); must not cost the warm ranking.
ALIGNMENT_OVERRIDES = {"default + ID dropout 50%": dict(id_dropout=0.5)}
VARIANTS.update({name: dict(DEFAULT_OBJECTIVE, head_epochs=30, head_hidden=1024) for name in ALIGNMENT_OVERRIDES})
#: Session 29, on the estimator's default since session 23: the 64 random extra negatives encoded forward-only
#: (on Beauty they hold about 2,900 of a step's 3,900 tokens, and the backward pass half of a step's time); it pays
#: only if the warm ranking holds. A trainer override until session 56, now ``random_negative_gradients=False``.
VARIANTS["default (session 23) + forward-only random negatives"] = dict(
    VARIANTS["default + co-occurrence factors (session 23)"], random_negative_gradients=False)
#: Session 37: each projector's ID-vector blocks (SASRec's embedding, EASE's factors) scaled to equal shares of their
#: variance (``balance_id_blocks``, a trainer override until session 56): on the cold rows it lifted SASRec's part in
#: the item vectors from R² 0.25-0.38 to 0.60 and the warm validation NDCG@10; on ML-100K the two blocks are near
#: balance already (57% / 43%).
VARIANTS["default (session 23) + ID blocks balanced at the projector's input"] = dict(
    VARIANTS["default + co-occurrence factors (session 23)"], balance_id_blocks=True)

#: Session 39: each tower's vector the mean of its prompt tokens' final LLM states instead of the last token's
#: (``PrefixConfig.pooling``, set with ``common.prefix_overrides``). With no prefix at all the mean carries far more
#: of the items' TF-IDF factors than the last token (id_recovery.py --frozen); it must not cost the warm ranking.
PREFIX_OVERRIDES = {"default (session 23) + mean-pooled LLM vectors": dict(pooling="mean")}
VARIANTS.update({name: VARIANTS["default + co-occurrence factors (session 23)"] for name in PREFIX_OVERRIDES})

#: Variants whose co-occurrence teacher is an EASE fitted on every user's training items (the data the shared SASRec
#: saw) with this L2, not on the fit's own users (session 22). At the CPU preset a fit sees 4,000 of Beauty's 22,363
#: users; EASE on them made the fused teacher worse than SASRec on validation, EASE on everyone better (0.0587
#: against 0.0525 at L2 50, teacher_fusion.py). The estimator's defaults otherwise (the teacher is still checked).
EASE_ON_EVERYONE = {"default, EASE teacher fitted on every user (L2 50)": 50.0}
VARIANTS.update({name: VARIANTS["default + co-occurrence teacher + pooled history (session 20)"]
                 for name in EASE_ON_EVERYONE})

#: Variants whose backbone's ID vectors carry co-occurrence too (session 22): SASRec's item and user vectors with
#: EASE's leading singular factors appended (:class:`WithEaseFactors`, this rank, weight 0.25), so the LLM's ID
#: prompts hold what the EASE teacher knows. teacher_span.py found the towers' item vectors span too little of
#: EASE's directions for the student to copy that teacher. The backbone's own scores are then SASRec + 0.25 x
#: rank-r EASE (of the last max_history items), so the separate co-occurrence teacher is off.
EASE_FACTORS = {"default, ID vectors + EASE rank-64 factors (no EASE teacher)": 64}
VARIANTS.update({name: dict(VARIANTS["default + co-occurrence teacher + pooled history (session 20)"],
                            cooccurrence_teacher=0.0) for name in EASE_FACTORS})

#: Variants whose co-occurrence factors come from an EASE fitted on every user (the data the shared SASRec saw;
#: at the CPU preset a fit sees 4,000 of Beauty's 22,363 users), not on the fit's own users (session 24): the
#: estimator's text factors beside EASE's at the setting factor_check.py found best on Beauty's validation items
#: with no training (SASRec 0.0583; EASE factors 512, L2 50, weight 0.1: 0.0634; and TF-IDF factors 512: 0.0671).
#: Their factor settings were benchmark overrides until session 56, now estimator parameters (the same fits and
#: checkpoint fingerprints); only where EASE is fitted stays the benchmark's (:func:`factors_fitted_on`).
_WIDE = "default + EASE factors on every user (512, L2 50, 0.1) + TF-IDF factors (512, 0.25)"
FACTORS_ON_EVERYONE = {_WIDE}
VARIANTS[_WIDE] = dict(VARIANTS["default + co-occurrence factors (session 23)"], cooccurrence_factors=512,
                       cooccurrence_teacher=0.1, cooccurrence_l2=50.0, text_factors=512, text_factor_weight=0.25)


def _wide_balanced(name: str, **params) -> str:
    """Register ``name``: session 24's wide ID vectors (``_WIDE``) with their blocks balanced at the projector's
    input and these estimator parameters on top."""
    FACTORS_ON_EVERYONE.add(name)
    VARIANTS[name] = dict(VARIANTS[_WIDE], balance_id_blocks=True, **params)
    return name


#: Session 38, for the next lent GPU (tools/offline_gpu): those wide ID vectors (64 + 512 + 512 numbers) ranked at
#: 1.21x SASRec with no training, but one CPU epoch taught the student about 60% of that. Here with their blocks
#: balanced at the projector's input (session 37: SASRec's part in the cold rows' item vectors from R² 0.25-0.38
#: to 0.60) and four epochs on every user: one fewer than the 5-epoch variant, to leave one 10-minute command
#: room for fitting the factors (about two minutes on the 2-core CPU, factor_check.py).
WIDE_BALANCED_GPU = _wide_balanced(
    "default + EASE and TF-IDF factors on every user, ID blocks balanced, 4 epochs (GPU)", epochs=4)
#: Session 43, the same vectors on the CPU preset: on the cold split, balanced blocks and 20,000 samples in bf16
#: taught the student 94% of its (SASRec + 512 text factors) ID vectors' warm ranking, and these rank at 1.21x
#: SASRec with no training, where session 24's 5,000 fp32 samples taught it about 60%.
WIDE_BALANCED_20000_BF16 = _wide_balanced(
    "default + EASE and TF-IDF factors on every user, ID blocks balanced, 20,000 samples, bf16", **_SAMPLES_20000_BF16)
#: Session 43: that row passed SASRec on both test metrics (three seeds: 1.04x NDCG@10, 1.097x HR@100) with the student
#: at 84-91% of its ID vectors' validation ranking after one epoch; a second pass over the same samples. Session
#: 44, seed 0: within noise of one epoch (paired +0.0006 NDCG@10, +0.0045 HR@100) for 1.9x the fit time.
WIDE_BALANCED_20000_BF16_2_EPOCHS = _wide_balanced(WIDE_BALANCED_20000_BF16 + ", 2 epochs", **_SAMPLES_20000_BF16,
                                                   epochs=2)
#: Variants that align on more users than are evaluated (``--users``): that many, the evaluated ones plus a seeded
#: draw (seed 0, whatever the fit's seed) of the others. The fit validates on all of them.
ALIGN_USERS: dict[str, int] = {}


def _more_users(samples: int, users: int, lower_cache_mb: int, suffix: str = "", bf16: bool = True, **params) -> str:
    """Register the balanced wide variant with ``samples`` alignment samples drawn from ``users`` users (the
    evaluated ones and more, :data:`ALIGN_USERS`), the LLM in bf16 (or fp32); ``suffix`` names what ``params``
    (estimator parameters) change."""
    name = _wide_balanced(f"default + EASE and TF-IDF factors on every user, ID blocks balanced, {samples:,} samples "
                          f"of {users:,} users, {'bf16' if bf16 else 'fp32'}{suffix}",
                          **dict(_SAMPLES_20000_BF16, sample_fraction=1.0, max_train_samples=samples,
                                 llm_dtype="bfloat16" if bf16 else "float32"),
                          lower_cache_mb=lower_cache_mb, **params)
    ALIGN_USERS[name] = users
    return name


#: Session 46: the heads' settings were not the lever (head_search.py), and the student's quality rose with every
#: doubling of its samples so far (5,000 -> 10,000 -> 20,000); the 4,000 users have no more next-item samples, so this
#: fit aligns on 8,000 users (the evaluated 4,000 plus 4,000 more) with twice the samples, and is evaluated on the
#: same 4,000 (so its test rows pair with the 20,000-sample row's user by user). 40,000 users' lower-layer states in
#: bf16 need about 2.7 GB, over the default budget of 2,048 MiB.
WIDE_BALANCED_40000_BF16 = _more_users(40_000, 8000, lower_cache_mb=4096)
#: Session 48: three seeds of that row tested at 1.089x SASRec on NDCG@10 and 1.101x on HR@100 (1.04x / 1.097x with
#: 20,000 samples), the curve still rising; the next doubling, from 16,000 users. Its user prompts' lower-layer
#: states take 5.5 GB in bf16 (5.2 GiB, the prompt cache's file), and a seed an estimated three hours of the 2-core
#: CPU (1.33 s a step), so it spans sessions (``--checkpoints``).
WIDE_BALANCED_80000_BF16 = _more_users(80_000, 16_000, lower_cache_mb=8192)
#: Session 52: a working directory lasts one session (three hours), and that row needs about six hours of a 2-core
#: AMD EPYC (3.3 s a step). The same samples with 16-token prompts (Beauty's user prompts fill 64 tokens, its items
#: average 36; on Beauty session 12 found 16 tokens within the seed spread at 3.5x less time) and the 64 random
#: negatives encoded forward-only (session 31: a step 0.63x as costly, ML-100K's final ranking within noise). Does a
#: seed fit in one session and keep the 80,000-sample row's ranking?
WIDE_BALANCED_80000_SHORT = _more_users(80_000, 16_000, lower_cache_mb=4096, max_prompt_tokens=16,
                                        suffix=", 16-token prompts, forward-only random negatives",
                                        random_negative_gradients=False)
#: The cheapest test of the same savings: session 43's 20,000-sample row (three seeds, 1.04x / 1.097x SASRec) in fp32
#: with 16-token prompts and forward-only random negatives, paired user by user with its seeds.
WIDE_20000_SHORT_FP32 = _wide_balanced(WIDE_BALANCED_20000_BF16.removesuffix(", bf16")
                                       + ", fp32, 16-token prompts, forward-only random negatives",
                                       **dict(_SAMPLES_20000_BF16, llm_dtype="float32"), max_prompt_tokens=16,
                                       random_negative_gradients=False)
#: Session 52's CPU had no bf16 instructions (AVX2 only; bf16 about 15x slower there): the same savings in fp32 on
#: half the samples, against the 40,000-sample row (three seeds, 1.089x / 1.101x SASRec), to see whether they cost
#: ranking before a seed of the row above is spent on them.
WIDE_40000_SHORT_FP32 = _more_users(40_000, 8000, lower_cache_mb=4096, max_prompt_tokens=16, bf16=False,
                                    suffix=", 16-token prompts, forward-only random negatives",
                                    random_negative_gradients=False)
#: Session 53: the 20,000-sample fp32 twin above landed level with its bf16 row after its heads (paired -0.0011 ±
#: 0.0016 NDCG@10, +0.0000 ± 0.0041 HR@100, seed 0), so the 80,000-sample row with the same savings, in fp32 for
#: CPUs without bf16 instructions. Its heads train in batches of 64 at lr 4e-4 (session 45, head_search.py: 4.3x
#: faster than batch 16 at 1e-4, level on test): at batch 16 they would take about an hour of 80,000 samples.
_CHEAP_80000 = dict(lower_cache_mb=4096, max_prompt_tokens=16, random_negative_gradients=False, head_batch_size=64,
                    head_lr=4e-4, suffix=", 16-token prompts, forward-only random negatives, head batch 64")
WIDE_80000_SHORT_FP32 = _more_users(80_000, 16_000, bf16=False, **_CHEAP_80000)
#: Session 54: that row's run was lost with its working directory after its epoch (validation 0.0449); this session's
#: CPU has bf16 instructions (a 512 x 576 x 1536 product 4.7x faster in bf16 than in fp32), so the same row in bf16.
WIDE_80000_SHORT_BF16 = _more_users(80_000, 16_000, **_CHEAP_80000)

#: Variants of an option that was measured here and removed because it lost (its rows stay in the results):
#: L2-normalised towers scored by cosine with a learned temperature (initial scale 20), ``similarity="cosine"``;
#: a cosine decay of the learning rate from ``lr`` to 0 over the planned steps (session 11: in the probe it lifted
#: linear towers to the backbone at 5% of the samples, the LLM towers not at all), ``lr_schedule="cosine"``.
REMOVED = {
    "default, cosine lr decay": "default, cosine decay of the learning rate to 0 over the epoch; option not kept",
    "cosine": "in-batch + logQ, L2-normalised towers (cosine, learned temperature); option removed",
    "catalogue+cosine": "catalogue, L2-normalised towers (cosine, learned temperature); option removed",
}


def shared_sasrec(train, cache: Path, device: str = "cpu") -> CFBackbone:
    """SASRec (seed 0) on RARecommender's own inner split, fitted once on ``device`` and cached as safetensors +
    JSON; always returned as read back from the cache, on the CPU."""
    if not (cache / "meta.json").exists():
        config, training = SETTINGS["sasrec"]
        inner = leave_last_out(train, n_valid=0)
        backbone = make_backbone("sasrec", TrainingConfig(**training, random_state=0, device=device, verbose=False),
                                 **config)
        start = time.perf_counter()
        backbone.fit(inner.train, inner.test)
        print(f"SASRec on {device}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        meta, tensors = backbone.to_state()
        cache.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(cache / "tensors.safetensors"))
        (cache / "meta.json").write_text(json.dumps(meta))
    return CFBackbone.from_state(json.loads((cache / "meta.json").read_text()),
                                 load_file(str(cache / "tensors.safetensors")), "cpu", source=str(cache))


def seeded_users(n_total: int, n_users: int, keep: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A boolean mask of ``n_users`` of ``n_total`` users: those in ``keep`` (a mask) plus seeded others."""
    chosen = np.zeros(n_total, dtype=bool) if keep is None else keep.copy()
    others = np.flatnonzero(~chosen)
    chosen[np.random.default_rng(seed).choice(others, size=max(0, n_users - int(chosen.sum())), replace=False)] = True
    return chosen


def aligned_users(train, everyone, n_users: int):
    """The training log of ``n_users`` users: those of ``train`` (a user subset of ``everyone``, the whole training
    log) plus a seeded draw of the others."""
    if everyone is None:
        raise ValueError("aligning on more users than are evaluated needs every user's training log (everyone)")
    evaluated = np.zeros(everyone.n_users, dtype=bool)
    evaluated[np.unique(train.user_codes)] = True
    chosen = seeded_users(everyone.n_users, n_users, keep=evaluated)
    return everyone.subset(chosen[everyone.user_codes])


def user_subset(split, n_users: int | None, seed: int = 0):
    """The split restricted to a seeded subset of ``n_users`` users, id maps (so the catalogue) kept whole.

    RA-Rec then trains on and encodes these users only (its cost on a CPU is mostly encoding users), while the
    shared backbone saw everyone; every row is evaluated on the same users. ``None``: the split as it is.
    """
    if n_users is None or n_users >= split.train.n_users:
        return split
    chosen = seeded_users(split.train.n_users, n_users, seed=seed)
    return split._replace(train=split.train.subset(chosen[split.train.user_codes]),
                          test=split.test.subset(chosen[split.test.user_codes]))


def reference_rows(backbone: CFBackbone, split, evaluated=None) -> dict:
    """Popularity and the backbone (both fitted on ``split.train``), scored on ``evaluated.test`` (default: all),
    each with its validation NDCG@10 on the split RARecommender validates on (every evaluated user's last
    training item held out, ranked against the rest of their history)."""
    part = evaluated or split
    inner = leave_last_out(part.train, n_valid=0)

    def metrics(scorer, valid_scorer):
        found = full_ranking_metrics(scorer, part.test, split.train, ks=[10, 100], metrics=["ndcg", "hr"],
                                     per_user=True)
        valid = full_ranking_metrics(valid_scorer, inner.test, inner.train, ks=[10], metrics=["ndcg"])
        found["users"] = part.test.users.ids[found["users"]]
        return {**mean_and_per_user(found), "valid_ndcg@10": valid["ndcg@10"]}

    popular_before = PopularityRecommender().fit(leave_last_out(split.train, n_valid=0).train)
    return {"popularity": metrics(PopularityRecommender().fit(split.train).score_users, popular_before.score_users),
            "SASRec backbone": metrics(backbone.scorer(split.train), backbone.scorer(inner.train))}


def mean_and_per_user(found: dict) -> dict:
    """Per-user test metrics (keyed by user id) as their means plus, under "per_user", the lists sorted by user id,
    so that any two rows of one data set can be compared user by user."""
    order = np.argsort(found["users"], kind="stable")
    per_user = {key: np.asarray(values)[order].tolist() for key, values in found.items()}
    return {**{key: float(np.mean(values)) for key, values in found.items() if key != "users"}, "per_user": per_user}


def run_variant(name: str, seed: int, backbone: CFBackbone, split, text, sample_scale: float = 1.0,
                everyone=None, keep: Path | None = None, prompt_cache: Path | None = PROMPT_CACHE,
                device: str = "cpu", llm_dtype: str = "auto", verbose: int = 0,
                checkpoints: Path | None = None) -> dict:
    """One RA-Rec fit; ``sample_scale`` multiplies sample_fraction (a user subset keeps the full data's count);
    ``everyone``: the training log of every user (``split``'s may be a subset), for :data:`EASE_ON_EVERYONE`;
    ``keep``: a folder the fitted model is saved to; ``prompt_cache``: where the fit's once-per-fit prompt pass
    is kept for later fits (``common.cached_prompt_states``; None: not kept); ``device``, ``llm_dtype`` and
    ``verbose``: the estimator's (the shared backbone stays where it was fitted); ``checkpoints``: the fit's own
    checkpoint folder (``checkpoint_dir``), resumed from when it exists (the fit's fingerprint, which covers the
    research settings, refuses another fit's folder), so a fit stopped by a session's end loses at most
    ``checkpoint_every`` steps. A row whose fit resumed says so (``"resumed"``): its ``fit_s`` counts only the run
    that finished it."""
    params = {**BASE, **VARIANTS[name]}
    params["sample_fraction"] = min(1.0, params["sample_fraction"] * sample_scale)
    fit_log = split.train if name not in ALIGN_USERS else aligned_users(split.train, everyone, ALIGN_USERS[name])
    resumed = checkpoints is not None and checkpoints.exists()
    if name in EASE_FACTORS:
        if checkpoints is not None:
            raise ValueError(f"{name!r} wraps SASRec in a benchmark-only backbone that cannot be saved, so its fit "
                             "cannot be checkpointed; run it without --checkpoints")
        everyone = split.train if everyone is None else everyone
        backbone, keep = WithEaseFactors(backbone, leave_last_out(everyone, n_valid=0).train, EASE_FACTORS[name]), None
    # a variant may fix the LLM's dtype itself (``llm_dtype`` in its parameters); otherwise the run's applies
    rec = RARecommender(**{"backbone": backbone, "device": device, "llm_dtype": llm_dtype, "random_state": seed,
                           "verbose": verbose, "checkpoint_dir": checkpoints, **params})
    start = time.perf_counter()
    with text_teacher(TEXT_TEACHERS.get(name)), ease_teacher_of(EASE_TEACHERS.get(name)), \
            alignment_overrides(**ALIGNMENT_OVERRIDES.get(name, {})), \
            prefix_overrides(**PREFIX_OVERRIDES.get(name, {})), \
            given_ease(EASE_ON_EVERYONE.get(name), split.train if everyone is None else everyone), \
            factors_fitted_on((split.train if everyone is None else everyone) if name in FACTORS_ON_EVERYONE
                              else None), \
            cached_prompt_states(prompt_cache):
        rec.fit(fit_log, item_text=text, resume=resumed)
    fit_s = time.perf_counter() - start
    if keep is not None:
        rec.save(keep)
    test = mean_and_per_user(rec.evaluate(split.test, ks=[10, 100], metrics=["ndcg", "hr"], per_user=True))
    heads = [r for r in rec.training_log_ if r.get("stage") == "output_heads"]
    log = [r for r in rec.training_log_ if "stage" not in r]  # the prefixes' epochs
    row = {"variant": name, "seed": seed, "params": params, "fit_s": fit_s,
           "train_s": sum(r["seconds"] for r in log), "setup_s": log[0].get("setup_seconds", 0.0),
           "samples": log[0]["samples"], "epochs_run": len(log),
           "valid_ndcg@10": max(r.get("valid_ndcg@10", -1.0) for r in rec.training_log_),
           "valid_ndcg@10_by_epoch": [r.get("valid_ndcg@10") for r in log],
           "cooccurrence_check": log[0].get("cooccurrence_teacher", log[0].get("cooccurrence_factors")),
           **({"text_check": log[0]["text_factors"]} if "text_factors" in log[0] else {}),
           **({"resumed": True} if resumed else {}), **test}
    if name in ALIGN_USERS:  # the fit also validated on these users' held-out items, not only the evaluated ones
        row["aligned_users"] = int(np.unique(fit_log.user_codes).size)
    if heads:  # the output heads' stage: its own seconds and validation, and whether the fit kept them
        row.update({"heads_s": heads[0]["seconds"], "heads_valid_ndcg@10": heads[0].get("valid_ndcg@10"),
                    "heads_kept": heads[0].get("kept")})
    return row


class WithEaseFactors(CFBackbone):
    """A fitted SASRec whose vectors carry EASE's leading ``rank`` singular factors too (a benchmark prototype).

    With ``U S V^T`` EASE's weights truncated to ``rank``, an item's vector is ``[e_i, c v_i]`` and a user's
    ``[u, c h U S]`` (``h`` the multi-hot row of the history the backbone reads), so a dot product is SASRec's score
    plus ``weight`` x rank-r EASE, ``c**2`` putting that weight in units of SASRec's score spread (as the estimator's
    co-occurrence teacher). EASE is fitted on ``train`` (every user's histories, validation items held out). Not
    savable: its saved state would be SASRec's alone.
    """

    name = "sasrec"

    def __init__(self, sasrec: CFBackbone, train, rank: int, weight: float = 0.25) -> None:
        from rarec.cf import EASE, history_matrix

        super().__init__(sasrec.config, sasrec.training)
        self.sasrec = sasrec
        for attribute in ("n_users_", "n_items_", "train_sequences_", "device_", "module_", "training_log_"):
            setattr(self, attribute, getattr(sasrec, attribute))
        sequences = train.user_sequences()
        left, values, right = torch.linalg.svd(EASE().fit(sequences, train.n_items).weights_.double())
        self.user_side, self.item_side = (left[:, :rank] * values[:rank]).float(), right[:rank].T.float()
        probe = [np.asarray(q[-sasrec.config.max_len:]) for q in sequences[:1000]]
        ease = torch.as_tensor(history_matrix(probe, train.n_items) @ self.user_side.numpy()) @ self.item_side.T
        unit = float(sasrec.score_histories(probe).std(1).mean()) / float(ease.std(1).mean())
        scale = (weight * unit) ** 0.5
        self.user_side, self.item_side = self.user_side * scale, self.item_side * scale

    def _build_module(self, n_users, n_items):
        raise NotImplementedError("WithEaseFactors wraps a fitted backbone")

    def _epoch_batches(self, store, generator):
        raise NotImplementedError("WithEaseFactors wraps a fitted backbone")

    def _batch_loss(self, batch):
        raise NotImplementedError("WithEaseFactors wraps a fitted backbone")

    def _item_table(self) -> torch.Tensor:
        return torch.cat([self.sasrec._item_table().detach().cpu(), self.item_side], dim=1)

    def _encode(self, histories, users) -> torch.Tensor:
        from rarec.cf import history_matrix

        rows = history_matrix(histories, self.n_items_) @ self.user_side.numpy()
        return torch.cat([self.sasrec._encode(histories, users).cpu(), torch.as_tensor(rows)[:, None, :]], dim=2)


@contextlib.contextmanager
def added_teacher(make: Callable | None):
    """While it is open, RARecommender's alignment distils from the backbone's logits plus those of
    ``make(towers, samples, sequences)`` (an ``extra_teacher`` of ``train_alignment``); nothing changes when
    ``make`` is None."""
    if make is None:
        yield
        return
    original = estimator.train_alignment

    def train(towers, samples, sequences, *args, **kwargs):
        return original(towers, samples, sequences, *args, extra_teacher=make(towers, samples, sequences), **kwargs)

    estimator.train_alignment = train
    try:
        yield
    finally:
        estimator.train_alignment = original


@contextlib.contextmanager
def given_ease(l2: float | None, train):
    """While it is open, the estimator's co-occurrence teacher uses an EASE with this ``l2`` fitted on ``train``
    with each user's last item held out (the items SASRec's fit validated on, as the estimator holds them out)
    instead of fitting one on the fit's own users; nothing changes when ``l2`` is None."""
    if l2 is None:
        yield
        return
    import rarec.align._trainer as trainer
    from rarec.cf import EASE

    start = time.perf_counter()
    ease = EASE(l2=l2).fit(leave_last_out(train, n_valid=0).train.user_sequences(), train.n_items)
    print(f"EASE on {train.n_users:,} users (L2 {l2:g}): {time.perf_counter() - start:.0f} s", file=sys.stderr)
    original = trainer.cooccurrence_teacher
    trainer.cooccurrence_teacher = functools.partial(original, ease=ease)
    try:
        yield
    finally:
        trainer.cooccurrence_teacher = original


@contextlib.contextmanager
def factors_fitted_on(train):
    """While it is open, the fit's co-occurrence factors (``cooccurrence_factors``) come from an EASE fitted on
    ``train`` with each user's last item held out (as :func:`given_ease`) instead of the fit's own users; nothing
    changes when ``train`` is None."""
    if train is None:
        yield
        return
    import rarec._fit_steps as fit_steps

    everyone = leave_last_out(train, n_valid=0).train.user_sequences()

    class OnEveryone(CooccurrenceFactors):
        @classmethod
        def fit(cls, histories, n_items, rank, l2=200.0):
            return CooccurrenceFactors.fit(everyone, n_items, rank, l2)

    original = fit_steps.CooccurrenceFactors
    fit_steps.CooccurrenceFactors = OnEveryone
    try:
        yield
    finally:
        fit_steps.CooccurrenceFactors = original


def text_teacher(weight: float | None):
    """:func:`added_teacher` with :func:`tfidf_teacher` of this weight (nothing when ``weight`` is None)."""
    return added_teacher(None if weight is None else lambda *fit: tfidf_teacher(*fit, weight))


def ease_teacher_of(weight: float | None):
    """:func:`added_teacher` with :func:`ease_teacher` of this weight (nothing when ``weight`` is None)."""
    return added_teacher(None if weight is None else lambda *fit: ease_teacher(*fit, weight))


def sample_histories(towers, samples, sequences):
    """Each sample's history window (its user's last items before the target, as the prompt sees them) as a sparse
    row over the catalogue, (n_samples, n_items)."""
    import scipy.sparse as sp

    histories = [towers.window(sequences[u][:e]) for u, e in zip(samples.users, samples.ends)]
    return sp.csr_matrix((np.ones(sum(map(len, histories)), dtype=np.float32), np.concatenate(histories),
                          np.cumsum([0, *map(len, histories)])), shape=(len(histories), towers.n_items))


def spread_scale(towers, samples, sequences, scores, weight: float, n_probe: int = 1000) -> float:
    """``weight`` in units of the backbone's score spread: the ratio of the mean per-sample std over the catalogue
    of the backbone's scores to that of ``scores(rows)`` (a dense (rows, n_items) array), on ``n_probe`` samples."""
    probe = np.random.default_rng(0).permutation(len(samples))[:n_probe]
    histories = [towers.window(sequences[samples.users[r]][:samples.ends[r]]) for r in probe]
    cf = towers.user_cf(histories, samples.users[probe])[:, 0] @ towers.item_cf[:, 0].T
    return weight * float(cf.std(1).mean()) / float(np.asarray(scores(probe)).std(1).mean())


def tfidf_teacher(towers, samples, sequences, weight: float):
    """``extra_teacher(rows, candidates)``: ``weight`` x the cosine of each sample's history and each candidate
    (TF-IDF of title and categories, user = mean of the history), rescaled so that one unit is the spread of the
    backbone's scores (:func:`spread_scale`), as the fusion rows are."""
    from cold_items import tfidf_items, tfidf_users

    items = tfidf_items(towers.texts)
    users = tfidf_users(sample_histories(towers, samples, sequences), items)
    scale = spread_scale(towers, samples, sequences, lambda rows: (users[rows] @ items.T).toarray(), weight)

    def extra(rows, candidates):
        columns = items if candidates is None else items[candidates]
        return torch.as_tensor((users[rows] @ columns.T).toarray() * scale, dtype=torch.float32)
    return extra


def ease_teacher(towers, samples, sequences, weight: float):
    """``extra_teacher(rows, candidates)``: ``weight`` x the EASE score of each candidate given the sample's whole
    history, in units of the backbone's score spread: the estimator's ``cooccurrence_teacher``, given here through
    the ``extra_teacher`` hook (as the session-20 row "default + teacher SASRec + 0.25 x EASE" was run)."""
    from rarec.align._cooccurrence_teacher import cooccurrence_teacher

    def backbone(rows):
        histories = [towers.window(sequences[samples.users[r]][:samples.ends[r]]) for r in rows]
        return towers.user_cf(histories, samples.users[rows])[:, 0] @ towers.item_cf[:, 0].T
    return cooccurrence_teacher(weight, sequences, samples, backbone, towers.n_items)


def slug(name: str) -> str:
    """A folder name for a variant: its words joined by underscores, other characters dropped."""
    words = ("".join(c for c in word if c.isalnum() or c == ".") for word in name.lower().split())
    return "_".join(word for word in words if word)


def render(result: dict) -> str:
    def cell(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 \
            else f"{values[0]:.4f}"

    dataset = result.get("dataset", "ml-100k")
    where = "GPU" if result.get("device", "cpu") != "cpu" else "CPU"
    if where == "GPU":
        timing = "Fit seconds are wall clock, mean over seeds, each fit alone on the GPU machine" + (
            "; SASRec was fitted there too." if result.get("sasrec_fitted_on", "cpu") != "cpu" else ".")
    else:
        timing = ("Fit seconds are wall clock, mean over seeds; many fits shared the 2 cores with other jobs, so "
                  "only quiet runs compare (see the text above the table).")
    lines = [f"## Training objective study ({DATASET_TITLES.get(dataset, dataset)}, SmolLM2-135M, {where})", "",
             f"Written by `benchmarks/objective_study.py` on {result['machine']}. One SASRec backbone (seed 0) "
             "shared by every fit; each RA-Rec row is the LLM score alone (the paper's ranking), mean ± std over "
             "the seeds run. Base: the CPU preset (`sample_fraction=0.01`, one epoch, prefixes in the top 8 "
             "layers) unless a row names another budget; \"baseline\" is the objective before this study (in-batch "
             "softmax without logQ). " + timing, "",
             *([f"CPU preset for a large log: RA-Rec aligns on, and every row is evaluated on, a seeded subset of "
                f"{result['users']:,} of the {result['all_users']:,} users (the backbone saw them all, the whole "
                "catalogue is ranked, and `sample_fraction` is scaled so the fit draws as many samples as on all "
                "users); a GPU run would use every user." + (
                    " A row that names more users aligns on that many (the evaluated users plus a seeded draw of "
                    "the others) and validates on all of them; it is tested on the same users as the rest."
                    if any("aligned_users" in r for r in result["rows"]) else ""), ""]
               if result.get("users", 0) < result.get("all_users", 0)
               else []),
             "| row | seeds | valid NDCG@10 | test NDCG@10 | test HR@100 | fit (s) |", "|---|---|---|---|---|---|"]
    for label, m in result["reference"].items():
        valid = f"{m['valid_ndcg@10']:.4f}" if "valid_ndcg@10" in m else "–"
        lines.append(f"| {label} | – | {valid} | {m['ndcg@10']:.4f} | {m['hr@100']:.4f} | – |")
    for name in list(VARIANTS) + list(REMOVED):
        rows = [r for r in result["rows"] if r["variant"] == name]
        if rows:
            lines.append(f"| RA-Rec: {REMOVED.get(name, name)} | {len(rows)} | "
                         f"{cell([r['valid_ndcg@10'] for r in rows])}{validated_on(rows)} | "
                         f"{cell([r['ndcg@10'] for r in rows])} | {cell([r['hr@100'] for r in rows])} | "
                         f"{statistics.mean(r['fit_s'] for r in rows):.0f}{resumed_mark(rows)} |")
    lines[2] += resumed_note(result["rows"])
    return "\n".join(lines + paired_lines(result)) + "\n"


def validated_on(rows: list[dict]) -> str:
    """What a row's validation cell adds when its fits validated on more users than are evaluated."""
    aligned = {r["aligned_users"] for r in rows if "aligned_users" in r}
    return f" ({', '.join(f'{n:,}' for n in sorted(aligned))} users)" if aligned else ""


def paired_lines(result: dict) -> list[str]:
    """The rows that kept per-user test metrics, each compared user by user with the backbone: the mean per-user
    difference ± its standard error (the seeds' values averaged per user first) and users better / worse."""
    backbone = result["reference"].get("SASRec backbone", {}).get("per_user")
    rows_by_variant = {name: [r["per_user"] for r in result["rows"] if r["variant"] == name and "per_user" in r]
                       for name in list(VARIANTS) + list(REMOVED)}
    if backbone is None or not any(rows_by_variant.values()):
        return []
    lines = ["", "Paired with the backbone on the same test users (RA-Rec − SASRec per user, the seeds averaged per "
             "user first; ± one standard error; a gap within about two standard errors is noise):", "",
             "| row | seeds | Δ test NDCG@10 | Δ test HR@100 | users better / worse (NDCG@10) |",
             "|---|---|---|---|---|"]
    for name, runs in rows_by_variant.items():
        if runs:
            ndcg, hr = (paired_difference(runs, backbone, metric) for metric in ("ndcg@10", "hr@100"))
            lines.append(f"| RA-Rec: {REMOVED.get(name, name)} | {len(runs)} | {ndcg['mean_difference']:+.4f} ± "
                         f"{ndcg['standard_error']:.4f} | {hr['mean_difference']:+.4f} ± {hr['standard_error']:.4f} | "
                         f"{ndcg['wins']} / {ndcg['losses']} |")
    return lines


def checkpoint_folder(root: Path | None, data: str, name: str, seed: int, users: int, device: str,
                      llm_dtype: str) -> Path | None:
    """With ``--checkpoints DIR``, one fit's folder under it: named by the data set, variant, seed, user preset,
    device and (when not "auto") the run's LLM dtype, so each fit resumes its own; None without."""
    if root is None:
        return None
    return root / "_".join([f"objective_study_{data}", slug(name), f"seed{seed}", f"users{users}", device]
                           + ([llm_dtype] if llm_dtype != "auto" else []))


def run_files(data: Path, device: str) -> tuple[Path, str, Path]:
    """Where a run's rows are kept, its docs section's marker and its shared SASRec's cache: one set per data set,
    and another for runs on a GPU (their fits see every user and are timed on other hardware, and their SASRec may
    be fitted there, so their rows never mix with the CPU's; carried to the next GPU, the cache keeps the GPU rows'
    backbone the same)."""
    suffix = dataset_suffix(data) + ("" if device == "cpu" else "_gpu")
    return (HERE / "results" / f"objective_study{suffix}.json", "objective-study" + suffix.replace("_", "-"),
            HERE / "output" / f"objective_study_sasrec{suffix}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/ml-100k")
    parser.add_argument("--variants", default=";".join(VARIANTS),
                        help="names of VARIANTS separated by semicolons (names hold commas)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--again", action="store_true", help="rerun variants already in the results")
    parser.add_argument("--keep-models", type=Path, default=None,
                        help="save each fitted model in this folder (one subfolder per variant and seed)")
    parser.add_argument("--render", action="store_true", help="only write the docs section from the saved JSON")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="checkpoint each RA-Rec fit under DIR (one folder per data set, variant, seed, user "
                             "preset, device and dtype); running the same command again resumes a stopped fit where "
                             "it left off")
    parser.add_argument("--users", type=int, default=None,
                        help="align on and evaluate a seeded subset of this many users (a CPU preset for large data: "
                             "the backbone still sees everyone, the catalogue stays whole, sample_fraction is scaled "
                             "so the number of samples is the full data's); default: every user")
    parser.add_argument("--device", default="cpu",
                        help="the RA-Rec fits' device (cpu, cuda); a GPU's rows are kept and rendered apart")
    parser.add_argument("--llm-dtype", default="auto", help="the RA-Rec fits' llm_dtype")
    parser.add_argument("--sasrec-device", default="cpu",
                        help="where the shared SASRec is fitted when it is not cached yet (it is read back on the CPU)")
    parser.add_argument("--verbose", type=int, default=0, help="the RA-Rec fits' verbose (1: progress bars)")
    parser.add_argument("--prompt-cache", default=str(PROMPT_CACHE),
                        help="folder of the fits' cached prompt passes; 'none': not kept")
    parser.add_argument("--output", type=Path, default=HERE.parent / "docs/benchmarks.md")
    args = parser.parse_args()
    results, marker, sasrec_cache = run_files(args.data, args.device)
    prompt_cache = None if args.prompt_cache == "none" else Path(args.prompt_cache)
    result = json.loads(results.read_text()) if results.exists() else {"rows": []}
    unknown = [name for name in args.variants.split(";") if name not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {'; '.join(VARIANTS)}")
    if not args.render:
        log, text = read_dataset(args.data)
        split = leave_last_out(log, n_valid=0)
        if not (sasrec_cache / "meta.json").exists():
            result["sasrec_fitted_on"] = args.sasrec_device
        backbone = shared_sasrec(split.train, sasrec_cache, args.sasrec_device)
        n_users = min(args.users or log.n_users, log.n_users)
        evaluated = user_subset(split, n_users)
        held = result.get("users", log.n_users)
        if result["rows"] and held != n_users:
            sys.exit(f"{results} holds rows of {held} users; rerun with --users {held} or move the file aside")
        result["reference"] = reference_rows(backbone, split, evaluated)
        result["dataset"], result["users"], result["all_users"] = args.data.name, n_users, log.n_users
        result["machine"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        if args.device != "cpu":
            result["machine"] += f", {torch.cuda.get_device_name()} (torch {torch.__version__})"
            result["device"] = args.device
        for name in args.variants.split(";"):
            for seed in map(int, args.seeds.split(",")):
                done = [r for r in result["rows"] if r["variant"] == name and r["seed"] == seed]
                if done and not args.again:
                    continue
                keep = None if args.keep_models is None else args.keep_models / f"{slug(name)}_seed{seed}"
                row = run_variant(name, seed, backbone, evaluated, text, log.n_users / n_users, split.train, keep,
                                  prompt_cache, args.device, args.llm_dtype, args.verbose,
                                  checkpoint_folder(args.checkpoints, args.data.name, name, seed, n_users, args.device,
                                                    args.llm_dtype))
                print(json.dumps({k: v for k, v in row.items() if k != "per_user"}), file=sys.stderr)
                result["rows"] = [r for r in result["rows"] if r not in done] + [row]
                results.parent.mkdir(parents=True, exist_ok=True)
                results.write_text(results_json(result))
    write_section(args.output, render(result), marker=marker)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
