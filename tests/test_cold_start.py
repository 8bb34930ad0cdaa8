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


def test_new_items_join_the_catalogue_with_the_cf_embedding_of_their_nearest_known_item(with_new_items):
    X, before, rec = with_new_items
    n = before.n_items_
    users = np.unique(X[:, 0])[:5]
    old_ids, old_scores = before.recommend(users, k=n)
    twin = rec.towers_.texts[3]
    rec.add_items({1001: (twin.title, list(twin.categories)), 1002: "zzqx unheardof"})
    assert rec.n_items_ == n + 2 and rec.item_vectors_.shape[0] == n + 2
    torch.testing.assert_close(rec.item_vectors_[:n], before.item_vectors_)  # nothing else moves
    cf = before.towers_.item_cf[:, 0]
    torch.testing.assert_close(rec.towers_.item_cf[n, 0], cf[3])  # the same text as item 3: its embedding
    torch.testing.assert_close(rec.towers_.item_cf[n + 1, 0], cf.mean(0))  # no word in common: the mean
    assert not torch.allclose(rec.item_vectors_[n], rec.item_vectors_[n + 1])
    ids, scores = rec.recommend(users, k=n + 2)
    for row in range(len(users)):
        assert {1001, 1002} <= set(ids[row]) or None in ids[row]
        kept = [(i, s) for i, s in zip(ids[row], scores[row]) if i not in (1001, 1002)]
        assert [i for i, _ in kept] == list(old_ids[row])


def test_an_added_items_prefix_does_not_depend_on_what_else_is_added(with_new_items):
    _, before, rec = with_new_items
    n = before.n_items_
    rec.add_items({1001: "A brand new film", 1002: before.towers_.texts[5].title})
    one_by_one = copy.deepcopy(before)
    one_by_one.add_items({1002: before.towers_.texts[5].title})
    one_by_one.add_items({1001: "A brand new film"})
    torch.testing.assert_close(one_by_one.towers_.item_cf[n, 0], rec.towers_.item_cf[n + 1, 0])
    torch.testing.assert_close(one_by_one.towers_.item_cf[n + 1, 0], rec.towers_.item_cf[n, 0])


def test_adding_items_one_call_at_a_time_reuses_the_text_index_and_prompts(with_new_items, monkeypatch):
    from rarec.align import _cold_items

    _, before, rec = with_new_items
    n = before.n_items_
    fitted = []
    original = _cold_items.TextNeighbours.__init__
    monkeypatch.setattr(_cold_items.TextNeighbours, "__init__",
                        lambda self, known: (fitted.append(len(known)), original(self, known))[1])
    rec.add_items({1001: "A brand new film"})
    tokens = rec.towers_.item_tokens
    rec.add_items({1002: before.towers_.texts[5].title})
    assert fitted == [n]  # the known items' TF-IDF is fitted by the first call alone
    assert rec.towers_.item_tokens is tokens and len(tokens) == n + 2  # the prompts are extended, not rebuilt
    together = copy.deepcopy(before)
    together.add_items({1001: "A brand new film", 1002: before.towers_.texts[5].title})
    assert rec.towers_.item_tokens == together.towers_.item_tokens
    torch.testing.assert_close(rec.item_vectors_, together.item_vectors_)


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


def test_nearest_known_items_by_title_and_categories(monkeypatch):
    from rarec.align import _cold_items
    from rarec.data import ItemText

    known = [ItemText("Red Planet", ("space",)), None, ItemText("Blue Kitchen", ("cooking",)),
             ItemText("Red Kitchen", ("cooking",))]
    added = [ItemText("Blue Kitchen Nights", ("cooking",)), ItemText("Planet of Comets", ("space",)),
             ItemText("Unrelated words", ()), ItemText("Red", ())]
    expected = [2, 0, -1, 3]  # "Red" weighs more in item 3, whose other words are common
    np.testing.assert_array_equal(_cold_items.nearest_known_items(known + added, len(known)), expected)
    monkeypatch.setattr(_cold_items, "_CHUNK", 1)  # compared one at a time: the same answers
    np.testing.assert_array_equal(_cold_items.nearest_known_items(known + added, len(known)), expected)
    assert _cold_items.nearest_known_items(known, len(known)).shape == (0,)
    np.testing.assert_array_equal(_cold_items.nearest_known_items([None, None] + added[:2], 2), [-1, -1])
    twins = [ItemText("Red Planet"), ItemText("Red Planet"), ItemText("Red Planet")]
    np.testing.assert_array_equal(_cold_items.nearest_known_items(twins, 2), [0])  # a tie: the lower index


def test_with_cold_items_takes_the_neighbours_embedding_or_the_mean():
    from rarec.align._cold_items import with_cold_items
    from rarec.data import ItemText

    embeddings = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    texts = [ItemText("Red Planet"), ItemText("Blue Kitchen"), ItemText("Blue Kitchen Nights"), ItemText("nothing")]
    torch.testing.assert_close(with_cold_items(embeddings, texts),
                               torch.tensor([[1.0, 0.0], [0.0, 3.0], [0.0, 3.0], [0.5, 1.5]]))
    assert with_cold_items(embeddings, texts[:2]) is embeddings
