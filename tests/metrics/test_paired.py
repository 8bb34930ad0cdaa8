import math

import numpy as np
import pytest
import scipy.sparse as sp

from rarec.metrics import full_ranking_metrics, paired_difference


def test_per_user_metrics_average_to_the_reported_means():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 9))
    test = sp.csr_matrix((rng.random((6, 9)) < 0.25).astype(np.float32))
    test[2] = 0  # a user without held-out items is not evaluated
    test.eliminate_zeros()
    mean = full_ranking_metrics(scores, test, ks=[3, 5])
    per_user = full_ranking_metrics(scores, test, ks=[3, 5], per_user=True)
    assert per_user["users"].tolist() == [u for u in range(6) if test[u].nnz]
    assert set(per_user) == set(mean) | {"users"}
    for key, value in mean.items():
        assert per_user[key].shape == per_user["users"].shape
        assert per_user[key].mean() == pytest.approx(value)


def test_paired_difference_by_hand():
    a = {"users": np.arange(4), "ndcg@10": np.array([1.0, 0.5, 0.0, 0.0])}
    b = {"users": np.arange(4), "ndcg@10": np.array([0.5, 0.5, 0.0, 0.5])}
    found = paired_difference(a, b)
    se = np.std([0.5, 0.0, 0.0, -0.5], ddof=1) / 2
    assert found["n_users"] == 4 and found["mean_difference"] == 0.0
    assert found["standard_error"] == pytest.approx(se)
    assert (found["ci95_low"], found["ci95_high"]) == pytest.approx((-1.96 * se, 1.96 * se))
    assert (found["wins"], found["losses"], found["ties"]) == (1, 1, 2)
    flipped = paired_difference(b, a)
    assert (flipped["wins"], flipped["losses"]) == (1, 1)


def test_paired_difference_averages_several_runs_per_user_first():
    users = np.array(["u1", "u2"])
    runs = [{"users": users, "hr@100": np.array([1.0, 0.0])}, {"users": users, "hr@100": np.array([0.0, 0.0])}]
    other = {"users": users, "hr@100": np.array([0.0, 1.0])}
    found = paired_difference(runs, other, metric="hr@100")
    assert found["mean_difference"] == pytest.approx((0.5 - 1.0) / 2)
    assert (found["wins"], found["losses"]) == (1, 1)


def test_paired_difference_refuses_mismatched_or_averaged_results():
    a = {"users": np.arange(3), "ndcg@10": np.zeros(3)}
    with pytest.raises(ValueError, match="different users"):
        paired_difference(a, {"users": np.array([0, 2, 1]), "ndcg@10": np.zeros(3)})
    with pytest.raises(ValueError, match="different users"):
        paired_difference([a, {"users": np.arange(4), "ndcg@10": np.zeros(4)}], a)
    with pytest.raises(ValueError, match="per_user=True"):
        paired_difference({"ndcg@10": 0.3}, a)
    with pytest.raises(ValueError, match="per_user=True"):
        paired_difference(a, a, metric="hr@100")
    with pytest.raises(ValueError, match="no per-user results"):
        paired_difference([], a)


def test_one_user_has_no_standard_error():
    one = {"users": np.array([7]), "ndcg@10": np.array([0.5])}
    assert math.isnan(paired_difference(one, one)["standard_error"])
