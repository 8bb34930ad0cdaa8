"""Cold start: users with a new history, users without one, items with text but no interactions."""

import copy

import numpy as np
import pytest
import torch

from rarec import RARecommender
from rarec.testing import tiny_llm

from .test_estimator import small, synthetic_split


@pytest.fixture(scope="module")
def fitted():
    X, _, text = synthetic_split()
    return X, text, small(tiny_llm(text), epochs=1).fit(X, item_text=text)


def test_a_new_user_with_a_history_is_ranked_through_the_user_tower(fitted):
    X, _, rec = fitted
    history = list(X[X[:, 0] == X[0, 0]][:, 1][:4])
    ids, scores = rec.recommend(histories=[history], k=5)
    assert ids.shape == (1, 5) and not set(ids[0]) & set(history)
    assert np.all(np.diff(scores[0]) <= 0)


def test_a_user_without_history_gets_the_most_popular_items(fitted):
    X, _, rec = fitted
    counts = {}
    for item in X[:, 1]:
        counts[item] = counts.get(item, 0) + 1
    ids, scores = rec.recommend(histories=[[], list(X[:3, 1])], k=4)
    assert list(scores[0]) == sorted(counts.values(), reverse=True)[:4]
    assert [counts[i] for i in ids[0]] == list(scores[0])
    assert ids[1][0] is not None and not np.array_equal(ids[0], ids[1])  # the other user is not popularity-ranked


def test_histories_must_be_a_sequence_of_sequences(fitted):
    with pytest.raises(TypeError, match="sequence of item-id sequences"):
        fitted[2].recommend(histories="abc")


@pytest.fixture()
def with_new_items(fitted):
    X, text, rec = fitted
    return X, rec, copy.deepcopy(rec)  # the copy shares the frozen LLM


def test_new_items_with_text_join_the_catalogue_with_the_mean_cf_embedding(with_new_items):
    X, before, rec = with_new_items
    n = before.n_items_
    users = np.unique(X[:, 0])[:5]
    old_ids, old_scores = before.recommend(users, k=n)
    rec.add_items({1001: ("A brand new film", ["Drama"]), 1002: "Another new film"})
    assert rec.n_items_ == n + 2 and rec.item_vectors_.shape[0] == n + 2
    torch.testing.assert_close(rec.item_vectors_[:n], before.item_vectors_)  # nothing else moves
    mean = before.towers_.item_cf[:, 0].mean(0)
    torch.testing.assert_close(rec.towers_.item_cf[n:, 0], torch.stack([mean, mean]))
    assert not torch.allclose(rec.item_vectors_[n], rec.item_vectors_[n + 1])  # their texts differ
    ids, scores = rec.recommend(users, k=n + 2)
    for row in range(len(users)):
        assert {1001, 1002} <= set(ids[row]) or None in ids[row]
        kept = [(i, s) for i, s in zip(ids[row], scores[row]) if i not in (1001, 1002)]
        assert [i for i, _ in kept] == list(old_ids[row])


def test_a_history_may_name_new_items(with_new_items):
    _, _, rec = with_new_items
    rec.add_items({1001: "A brand new film"})
    ids, _ = rec.recommend(histories=[[1001], [1001, rec.items_.ids[0]]], k=3)
    assert 1001 not in ids[0] and 1001 not in ids[1]


def test_items_without_text_are_left_out_and_known_ids_skipped_with_warnings(with_new_items):
    _, before, rec = with_new_items
    n = rec.n_items_
    with pytest.warns(UserWarning, match="neither interactions nor a title"):
        rec.add_items({1003: "", 1004: None})
    assert rec.n_items_ == n
    with pytest.warns(UserWarning, match="already in the catalogue"):
        rec.add_items({rec.items_.ids[0]: "A new title for an old item"})
    assert rec.n_items_ == n
    torch.testing.assert_close(rec.item_vectors_, before.item_vectors_)


def test_new_item_ids_must_have_the_catalogue_type(with_new_items):
    _, _, rec = with_new_items
    rec.add_items({1005: "an int id is fine here"})  # the synthetic catalogue's ids are ints
    with pytest.raises((TypeError, ValueError), match="id type"):
        rec.add_items({"s": "a string id among int ids"})


def test_added_items_survive_save_and_load(with_new_items, tmp_path):
    X, _, rec = with_new_items
    rec.add_items({1001: ("A brand new film", ["Drama"])})
    loaded = RARecommender.load(rec.save(tmp_path / "model"), llm=rec.llm)
    users = np.unique(X[:, 0])[:5]
    expected, got = rec.recommend(users, k=rec.n_items_), loaded.recommend(users, k=rec.n_items_)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)
    ids, _ = loaded.recommend(histories=[[1001]], k=3)  # the LLM is reloaded; the padded CF table too
    assert ids.shape == (1, 3)
