"""EASE's co-occurrence factors appended to the ID vectors (``cooccurrence_factors``)."""

import numpy as np
import pytest
import torch

import rarec._fit_steps as fit_steps
import rarec.cf._cooccurrence_factors as factors_module
from rarec import RARecommender
from rarec.cf import EASE, CooccurrenceFactors
from rarec.testing import tiny_llm

from ..test_estimator import small, synthetic_split

SEQUENCES = [np.array([0, 1, 2, 3, 1]), np.array([2, 4, 0]), np.array([3, 0, 1, 4]), np.array([5, 1]),
             np.array([4, 5, 2])]


def test_at_full_rank_the_factors_score_as_ease():
    factors = CooccurrenceFactors.fit(SEQUENCES, 6, rank=6, l2=1.0)
    histories = [np.array([0, 1]), np.array([4]), np.array([2, 3, 5])]
    torch.testing.assert_close(factors.score(histories), EASE(l2=1.0).fit(SEQUENCES, 6).score(histories),
                               atol=1e-5, rtol=1e-4)


def test_truncated_factors_are_ease_s_best_approximation_of_that_rank():
    weights = torch.as_tensor(EASE(l2=1.0).fit(SEQUENCES, 6).weights_, dtype=torch.float64)
    left, values, right = torch.linalg.svd(weights)
    best = (left[:, :2] * values[:2]) @ right[:2]
    factors = CooccurrenceFactors.fit(SEQUENCES, 6, rank=2, l2=1.0)
    assert factors.rank == 2
    torch.testing.assert_close((factors.history_side @ factors.item_side.T).double(), best, atol=1e-5, rtol=1e-4)
    assert CooccurrenceFactors.fit(SEQUENCES, 6, rank=100).rank == 6  # never more than the catalogue


def test_a_large_catalogue_gets_the_leading_directions_deterministically_and_leaves_the_global_stream(monkeypatch):
    rng = np.random.default_rng(0)
    groups = [rng.choice(np.arange(10 * g, 10 * g + 10), size=6, replace=False) for g in range(4) for _ in range(60)]
    exact = CooccurrenceFactors.fit(groups, 40, rank=4)
    monkeypatch.setattr(factors_module, "_EXACT_SVD_ITEMS", 0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, second = CooccurrenceFactors.fit(groups, 40, rank=4), CooccurrenceFactors.fit(groups, 40, rank=4)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first.history_side, second.history_side) and torch.equal(first.item_side, second.item_side)
    torch.testing.assert_close(first.history_side @ first.item_side.T, exact.history_side @ exact.item_side.T,
                               atol=1e-4, rtol=1e-3)


def test_scaling_puts_the_added_score_in_units_of_the_backbone_spread():
    factors = CooccurrenceFactors.fit(SEQUENCES, 6, rank=3)
    table = torch.as_tensor(np.random.default_rng(1).normal(size=(5, 6)) * 7, dtype=torch.float32)
    scaled = factors.scaled_to(0.5, SEQUENCES, lambda rows: table[torch.as_tensor(rows)])
    ratio = scaled.score(SEQUENCES).std(1).mean() / table.std(1).mean()
    assert float(ratio) == pytest.approx(0.5, rel=1e-4)
    torch.testing.assert_close(scaled.score(SEQUENCES[:2]), factors.score(SEQUENCES[:2]) * float(
        scaled.history_side[0, 0] * scaled.item_side[0, 0] / (factors.history_side[0, 0] * factors.item_side[0, 0])))
    with pytest.raises(ValueError, match="differ in shape"):
        CooccurrenceFactors(torch.zeros(6, 2), torch.zeros(6, 3))


@pytest.fixture(scope="module")
def fitted():
    X, test, text = synthetic_split()
    llm = tiny_llm(text)
    return small(llm).fit(X, item_text=text), X, test, text, llm


def test_the_id_vectors_score_as_the_backbone_plus_the_factors(fitted):
    rec = fitted[0]
    towers, factors = rec.towers_, rec.towers_.factors
    assert factors is not None and rec.training_log_[0]["cooccurrence_factors"]["kept"]
    histories, users = [np.array([0, 5, 7]), np.array([3, 1])], np.array([0, 1])
    vectors = towers.user_cf(histories, users)  # (n, K, d + r)
    d = rec.backbone_.item_embeddings().shape[1]
    assert vectors.shape[2] == towers.item_cf.shape[2] == d + factors.rank
    assert rec.towers_.aligner.user_prefix.config.id_dim == d + factors.rank
    expected = rec.backbone_.score_histories(histories, users) + factors.score(histories)
    torch.testing.assert_close(vectors[:, 0] @ towers.item_cf[:, 0].T, expected, atol=1e-4, rtol=1e-4)


def test_the_backbone_reads_the_window_and_the_factors_the_whole_history(fitted):
    import copy

    towers = copy.deepcopy(fitted[0].towers_)
    towers.settings.max_history = 2
    history = np.array([0, 5, 7, 9, 11])
    d = towers.backbone.item_embeddings().shape[1]
    vectors = towers.user_cf([history], np.array([-1]))[0, 0]
    torch.testing.assert_close(vectors[:d], towers.backbone.user_embeddings([history[-2:]])[0, 0])
    torch.testing.assert_close(vectors[d:], towers.factors.users([history])[0])
    assert not torch.allclose(vectors[d:], towers.factors.users([history[-2:]])[0])


def test_the_separate_teacher_is_off_with_factors(fitted):
    log = fitted[0].training_log_[0]
    assert "cooccurrence_teacher" not in log
    assert set(log["cooccurrence_factors"]) == {"rank", "valid_ndcg@10_backbone", "valid_ndcg@10_with_factors",
                                                "kept"}


@pytest.mark.parametrize("kept", [True, False])
def test_the_factors_are_appended_only_when_they_pass_the_check(monkeypatch, kept):
    X, _, text = synthetic_split()
    monkeypatch.setattr(fit_steps, "validation_check", lambda *args: {"valid_ndcg@10_backbone": 0.5,
                                                                      "valid_ndcg@10_with_factors": 0.6, "kept": kept})
    rec = small(tiny_llm(text), cooccurrence_factors=5).fit(X, item_text=text)
    assert (rec.towers_.factors is not None) is kept
    assert rec.towers_.item_cf.shape[2] == rec.backbone_.item_embeddings().shape[1] + (5 if kept else 0)
    assert rec.training_log_[0]["cooccurrence_factors"] == {"rank": 5, "valid_ndcg@10_backbone": 0.5,
                                                            "valid_ndcg@10_with_factors": 0.6, "kept": kept}


def test_no_factors_when_off_or_the_catalogue_is_too_large(monkeypatch):
    X, _, text = synthetic_split()
    llm = tiny_llm(text)
    for off in ({"cooccurrence_factors": 0}, {"cooccurrence_teacher": 0.0}):
        rec = small(llm, **off).fit(X, item_text=text)
        assert rec.towers_.factors is None and "cooccurrence_factors" not in rec.training_log_[0]
    monkeypatch.setattr(EASE, "MAX_ITEMS", 10)
    with pytest.warns(UserWarning, match="more than EASE's 10"):
        assert small(llm, cooccurrence_teacher=0.25).fit(X, item_text=text).towers_.factors is None


def test_a_multi_interest_backbone_gets_the_factors_after_each_interest():
    X, _, text = synthetic_split()
    rec = small(tiny_llm(text), backbone="comirec", backbone_params={"dim": 8, "n_interests": 2},
                cooccurrence_factors=4).fit(X, item_text=text)
    if rec.towers_.factors is None:  # the check may drop them on this tiny data: force them back for the shape
        pytest.skip("the validation check dropped the factors")
    vectors = rec.towers_.user_cf([np.array([0, 5, 7])], np.array([0]))
    assert vectors.shape == (1, 2, 12)
    torch.testing.assert_close(vectors[0, 0, 8:], vectors[0, 1, 8:])
    torch.testing.assert_close(vectors[0, 0, 8:], rec.towers_.factors.users([np.array([0, 5, 7])])[0])


def test_saved_and_loaded_the_factors_rank_the_same(fitted, tmp_path):
    rec, _, test, _, llm = fitted
    rec.save(tmp_path / "m")
    back = RARecommender.load(tmp_path / "m", llm=llm)
    assert back.cooccurrence_factors == rec.cooccurrence_factors
    torch.testing.assert_close(back.towers_.factors.item_side, rec.towers_.factors.item_side)
    torch.testing.assert_close(back.towers_.factors.history_side, rec.towers_.factors.history_side)
    assert back.score(test) == rec.score(test)


def test_an_added_item_borrows_its_text_neighbour_s_factors(fitted):
    import copy

    rec = copy.deepcopy(fitted[0])
    towers = rec.towers_
    neighbour = 3
    (added,) = towers.add_items([towers.texts[neighbour]])  # the same words: item 3 is its nearest known item
    d = rec.backbone_.item_embeddings().shape[1]
    torch.testing.assert_close(towers.item_cf[added, 0, d:], towers.factors.items[neighbour])
    torch.testing.assert_close(towers.item_cf[added, 0], towers.item_cf[neighbour, 0])


def test_the_rank_must_be_a_non_negative_int():
    X, _, text = synthetic_split()
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="cooccurrence_factors"):
            RARecommender(cooccurrence_factors=bad).fit(X, item_text=text)


def test_score_fusion_blends_in_the_id_vectors_score_with_the_factors(fitted):
    import copy

    rec, X = copy.deepcopy(fitted[0]), fitted[1]
    users = np.unique(X[:, 0])[:6]
    idx = rec._user_indices(users)
    histories = [rec.items_.encode([i for u2, i, *_ in X if u2 == u]) for u in users]
    rec.score_fusion_ = 1e6  # ranks by the CF score alone
    cf = rec.backbone_.score_histories([h[-rec.max_history:] for h in histories], idx)
    cf = cf + rec.towers_.factors.score(histories)
    torch.testing.assert_close(rec._scores(idx).argsort(dim=1, descending=True)[:, :5],
                               cf.argsort(dim=1, descending=True)[:, :5])
