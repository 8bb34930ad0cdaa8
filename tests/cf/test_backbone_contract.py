"""Behaviour every backbone shares, tested once for all of them."""

import numpy as np
import pytest
import torch

from rarec.cf import CFBackbone, PopularityRecommender
from rarec.metrics import full_ranking_metrics

from .conftest import FACTORIES


def test_beats_popularity_by_a_clear_margin(fitted, cf_split):
    pop = PopularityRecommender().fit(cf_split.before_test)
    base = full_ranking_metrics(pop.score_users, cf_split.test, cf_split.before_test, ks=[10])
    ours = full_ranking_metrics(fitted.scorer(cf_split.before_test), cf_split.test, cf_split.before_test, ks=[10])
    assert ours["ndcg@10"] > 2 * base["ndcg@10"], (ours, base)


def test_shapes_and_fitted_attributes(fitted, cf_split):
    n_items = cf_split.train.n_items
    items = fitted.item_embeddings()
    assert items.shape[0] == n_items and items.dtype == torch.float32
    hist = [np.array([0, 1, 2]), np.array([5])]
    users = fitted.user_embeddings(hist, users=[0, 1])
    assert users.shape == (2, fitted.n_interests, items.shape[1])
    scores = fitted.score_histories(hist, users=[0, 1])
    assert scores.shape == (2, n_items)
    torch.testing.assert_close(scores, (users @ items.T).amax(1))
    assert fitted.training_log_ and "valid_ndcg@10" in fitted.training_log_[0]


def test_scorer_matches_the_histories_it_is_given(fitted, cf_split):
    users = np.array([0, 3, 7])
    seqs = cf_split.train.user_sequences()
    via_scorer = fitted.scorer()(users)
    direct = fitted.score_histories([seqs[u] for u in users], users)
    torch.testing.assert_close(via_scorer, direct)


def test_save_and_load_give_identical_scores(fitted, cf_split, tmp_path):
    fitted.save(tmp_path / "model")
    restored = CFBackbone.load(tmp_path / "model", device=str(fitted.device_))  # same device, same arithmetic
    assert type(restored) is type(fitted)
    users = np.arange(10)
    torch.testing.assert_close(restored.scorer()(users), fitted.scorer()(users), rtol=0, atol=0)
    assert not list(tmp_path.glob("**/*.pkl")) and not list(tmp_path.glob("**/*.pt"))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_same_seed_same_embeddings_and_global_rng_untouched(name, cf_split):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    train = cf_split.train.subset(np.flatnonzero(cf_split.train.user_codes < 40))
    a = FACTORIES[name]()
    a.training.epochs = 2
    b = FACTORIES[name]()
    b.training.epochs = 2
    a.fit(train)
    b.fit(train)
    torch.testing.assert_close(a.item_embeddings(), b.item_embeddings(), rtol=0, atol=0)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_recommend_excludes_history_and_checks_k(fitted, cf_split):
    items, scores = fitted.recommend([0, 1], k=5)
    assert items.shape == scores.shape == (2, 5)
    seqs = cf_split.train.user_sequences()
    for row, u in enumerate([0, 1]):
        assert not set(items[row]) & set(seqs[u].tolist())
        assert np.all(np.diff(scores[row]) <= 0)
    n = cf_split.train.n_items
    with pytest.raises(ValueError, match=f"k must be an int in \\[1, n_items={n}\\]"):
        fitted.recommend([0], k=n + 1)
    with pytest.raises(ValueError, match="k must be"):
        fitted.recommend([0], k=0)


def test_bad_histories_are_named(fitted, cf_split):
    n = cf_split.train.n_items
    with pytest.raises(ValueError, match=f"history 1 holds item index {n}, but the catalogue has {n} items"):
        fitted.user_embeddings([np.array([0]), np.array([1, n])])
    with pytest.raises(ValueError, match="history 0 is empty"):
        fitted.user_embeddings([np.array([], dtype=int)])
    with pytest.raises(ValueError, match="flat array"):
        fitted.user_embeddings(np.array([1, 2, 3]))
    with pytest.raises(IndexError, match="user index 999 is out of range"):
        fitted.user_embeddings([np.array([1])], users=[999])


def test_unfitted_backbone_says_so():
    with pytest.raises(RuntimeError, match="not fitted yet"):
        FACTORIES["bpr"]().item_embeddings()
