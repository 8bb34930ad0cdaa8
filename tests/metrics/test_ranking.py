import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rarec.data import InteractionLog
from rarec.metrics import full_ranking_metrics, metrics_from_ranks, sampled_ranking_metrics


def csr(rows):
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


def test_hand_computed_single_target():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    # target item 3 has rank 4; item 0 is excluded (training item) -> rank 3
    out = full_ranking_metrics(scores, csr([[0, 0, 0, 1, 0]]), csr([[1, 0, 0, 0, 0]]), ks=[2, 3])
    assert out["hr@2"] == 0.0 and out["hr@3"] == 1.0
    assert out["ndcg@3"] == pytest.approx(1 / math.log2(4))
    assert out["mrr@3"] == pytest.approx(1 / 3) and out["mrr@2"] == 0.0
    assert out["recall@3"] == 1.0


def test_hand_computed_multiple_targets_and_users():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.4, 0.3, 0.2, 0.1]])
    test = csr([[1, 1, 0, 0], [0, 0, 0, 1]])
    out = full_ranking_metrics(scores, test, ks=[2])
    # user 0: ranking 1,2,3,0 -> targets at ranks 1 and 4; user 1: target at rank 4
    ndcg_u0 = 1.0 / (1.0 + 1 / math.log2(3))
    assert out["hr@2"] == pytest.approx(0.5)
    assert out["recall@2"] == pytest.approx(0.25)
    assert out["ndcg@2"] == pytest.approx(ndcg_u0 / 2)
    assert out["mrr@2"] == pytest.approx(0.5)


def test_ties_first_is_a_stable_sort_and_pessimistic_counts_all_ties():
    scores = np.zeros((1, 5))
    test = csr([[0, 0, 1, 0, 0]])
    assert full_ranking_metrics(scores, test, ks=[3], metrics=["hr"])["hr@3"] == 1.0  # rank 3 by index
    assert full_ranking_metrics(scores, test, ks=[4], metrics=["hr"], ties="pessimistic")["hr@4"] == 0.0
    assert full_ranking_metrics(scores, test, ks=[5], metrics=["hr"], ties="pessimistic")["hr@5"] == 1.0


def test_k_larger_than_catalogue_and_callable_torch_scorer():
    scorer = lambda users: torch.tensor([[0.0, 1.0, 2.0]]).repeat(len(users), 1)  # noqa: E731
    out = full_ranking_metrics(scorer, csr([[1, 0, 0], [1, 0, 0]]), ks=[1000])
    assert out["hr@1000"] == 1.0 and out["ndcg@1000"] == pytest.approx(1 / math.log2(4))


def test_target_that_is_also_excluded_keeps_its_own_score():
    out = full_ranking_metrics(np.array([[0.0, 1.0]]), csr([[0, 1]]), csr([[0, 1]]), ks=[1], metrics=["hr"])
    assert out["hr@1"] == 1.0


def test_users_without_targets_are_skipped_and_batches_agree():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30))
    test = sp.random(50, 30, density=0.05, random_state=1, format="csr")
    test.data[:] = 1
    exclude = sp.random(50, 30, density=0.2, random_state=2, format="csr")
    a = full_ranking_metrics(scores, test, exclude, batch_size=7)
    b = full_ranking_metrics(scores, test, exclude, batch_size=1000)
    assert a == pytest.approx(b)
    # reference: explicit sorting per user
    hits = []
    for u in np.flatnonzero(test.getnnz(axis=1)):
        s = scores[u].copy()
        targets = set(test[u].indices)
        s[[i for i in exclude[u].indices if i not in targets]] = -np.inf
        top = np.argsort(-s, kind="stable")[:10]
        hits.append(len(targets & set(top.tolist())) / len(targets))
    assert a["recall@10"] == pytest.approx(np.mean(hits))


def test_accepts_interaction_logs_and_rejects_bad_input():
    log = InteractionLog.from_any([(1, 1), (1, 2), (2, 2)])
    test = log.subset([1, 2])
    out = full_ranking_metrics(np.array([[0.0, 1.0], [1.0, 0.0]]), test, log.subset([0]), ks=[1])
    assert out["hr@1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="NaN"):
        full_ranking_metrics(np.array([[np.nan, 1.0], [1.0, 0.0]]), test, ks=[1])
    with pytest.raises(ValueError, match="'ks' parameter must hold ints in \\[1, inf\\). Got 0"):
        full_ranking_metrics(np.zeros((2, 2)), test, ks=[0])
    with pytest.raises(ValueError, match="shape"):
        full_ranking_metrics(lambda u: np.zeros((len(u), 3)), test)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics_from_ranks(np.array([1]), np.array([0]), metrics=["auc"])


def test_sampled_protocol_hand_checked_and_deterministic():
    scores = np.array([np.arange(10, dtype=float)])  # item 9 best
    test = csr([[0] * 9 + [1]])
    out = sampled_ranking_metrics(scores, test, n_negatives=5, ks=[1], random_state=0)
    assert out["hr@1"] == 1.0
    worst = sampled_ranking_metrics(-scores, test, n_negatives=5, ks=[5, 6], random_state=0)
    assert worst["hr@5"] == 0.0 and worst["hr@6"] == 1.0
    rng_scores = np.random.default_rng(3).normal(size=(20, 40))
    t = sp.random(20, 40, density=0.1, random_state=4, format="csr")
    assert sampled_ranking_metrics(rng_scores, t, random_state=1, n_negatives=10) == \
        sampled_ranking_metrics(rng_scores, t, random_state=1, n_negatives=10)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(1, 200)), min_size=1, max_size=50),
       st.lists(st.integers(1, 300), min_size=1, max_size=4))
def test_metric_bounds(pairs, ks):
    groups = np.array([g for g, _ in pairs])
    ranks = np.array([r for _, r in pairs])
    # ranks within a group are distinct in real use
    _, first = np.unique(np.stack([groups, ranks]), axis=1, return_index=True)
    out = metrics_from_ranks(ranks[first], groups[first], ks)
    for k in set(ks):
        for m in ("hr", "ndcg", "mrr", "recall"):
            assert 0.0 <= out[f"{m}@{k}"] <= 1.0 + 1e-12
        assert out[f"ndcg@{k}"] <= out[f"hr@{k}"] + 1e-12
        assert out[f"mrr@{k}"] <= out[f"hr@{k}"] + 1e-12
