"""The items' words as factors appended to the ID vectors (:class:`TextFactors`, a research setting of the fit)."""

import copy

import numpy as np
import pytest
import torch

import rarec._fit_steps as fit_steps
from rarec import RARecommender
from rarec.align._cold_items import nearest_other_items
from rarec.cf import TextFactors, history_matrix
from rarec.data import ItemText
from rarec.testing import tiny_llm

from ..test_estimator import small, synthetic_split

TEXTS = [ItemText(f"item {i} brand{i % 7} colour{i % 4}", (f"shelf {i % 3}",)) for i in range(30)]


def tfidf_cosine(texts, histories):
    """The TF-IDF baseline: the cosine of each history's mean unit-length TF-IDF row and every item's."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    rows = normalize(TfidfVectorizer(sublinear_tf=True).fit_transform([t.render() for t in texts]))
    users = normalize(history_matrix(histories, len(texts)) @ rows)
    return torch.as_tensor((users @ rows.T).toarray(), dtype=torch.float32)


def test_at_full_rank_the_factors_score_as_the_tfidf_cosine():
    factors = TextFactors.fit(TEXTS, rank=100)  # more than the words: every direction
    histories = [np.array([0, 1, 2]), np.array([5]), np.array([7, 7, 20])]
    torch.testing.assert_close(factors.score(histories), tfidf_cosine(TEXTS, histories), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(factors.users(histories).norm(dim=1), torch.ones(3))


def test_the_tfidf_is_fitted_once_and_shared_by_rescaled_factors(monkeypatch):
    import rarec.cf._text_factors as module

    fitted, original = [], module._vectorizer
    monkeypatch.setattr(module, "_vectorizer", lambda texts: fitted.append(len(texts)) or original(texts))
    factors = TextFactors.fit(TEXTS, rank=4)
    scaled = factors.rescaled(2.0)
    assert fitted == [len(TEXTS)] and scaled._vectorizer is factors._vectorizer
    torch.testing.assert_close(scaled.items, 2.0 * factors.items)
    TextFactors(factors.components, TEXTS)  # loading refits it from the saved texts
    assert fitted == [len(TEXTS)] * 2


def test_truncated_factors_keep_the_leading_directions_and_rescale_quadratically():
    factors = TextFactors.fit(TEXTS, rank=4)
    assert factors.rank == 4 and factors.items.shape == (30, 4) and factors.components.shape[1] == 4
    again = TextFactors.fit(TEXTS, rank=4)  # deterministic
    torch.testing.assert_close(again.items, factors.items)
    histories = [np.array([0, 1, 2])]
    torch.testing.assert_close(factors.rescaled(3.0).score(histories), 9.0 * factors.score(histories))


def test_a_new_text_gets_its_own_factors_and_unknown_words_none():
    factors = TextFactors.fit(TEXTS, rank=100)
    torch.testing.assert_close(factors.for_texts([TEXTS[4]])[0], factors.items[4])
    assert factors.for_texts([ItemText("zzz qqq")]).abs().sum() == 0
    with pytest.raises(ValueError, match="components cover"):
        TextFactors(factors.components[:-1], TEXTS)


def mocked_check(kept: bool):
    return lambda *args: {"valid_ndcg@10_backbone": 0.5, f"valid_ndcg@10_with_{args[4]}": 0.6, "kept": kept}


@pytest.fixture(scope="module")
def fitted():
    X, test, text = synthetic_split()
    llm = tiny_llm(text)
    with pytest.MonkeyPatch.context() as patch:  # both factor sets kept, whatever the tiny data's check says
        patch.setattr(fit_steps, "validation_check", mocked_check(True))
        rec = small(llm, cooccurrence_factors=4, text_factors=6).fit(X, item_text=text)
    return rec, X, test, text, llm


def test_the_id_vectors_score_as_the_backbone_plus_both_factor_sets(fitted):
    rec = fitted[0]
    towers = rec.towers_
    d, r, t = rec.backbone_.item_embeddings().shape[1], towers.factors.rank, towers.text_factors.rank
    assert (r, t) == (4, 6)
    assert towers.item_cf.shape[2] == rec.towers_.aligner.user_prefix.config.id_dim == d + r + t
    histories, users = [np.array([0, 5, 7]), np.array([3, 1])], np.array([0, 1])
    vectors = towers.user_cf(histories, users)
    torch.testing.assert_close(vectors[:, 0, d + r:], towers.text_factors.users(histories))
    expected = (rec.backbone_.score_histories(histories, users) + towers.factors.score(histories)
                + towers.text_factors.score(histories))
    torch.testing.assert_close(vectors[:, 0] @ towers.item_cf[:, 0].T, expected, atol=1e-4, rtol=1e-4)
    assert rec.training_log_[0]["text_factors"] == {"rank": 6, "valid_ndcg@10_backbone": 0.5,
                                                    "valid_ndcg@10_with_text_factors": 0.6, "kept": True}


def test_the_text_check_ranks_against_the_backbone_plus_the_kept_cooccurrence_factors(monkeypatch):
    X, _, text = synthetic_split()
    seen = {}

    def check(sequences, held_out, backbone_scores, added_scores, name, neighbours=None):
        histories = [np.asarray(s) for s in sequences[:3]]
        seen[name] = histories, backbone_scores(histories, np.arange(3)), neighbours
        return {"valid_ndcg@10_backbone": 0.5, f"valid_ndcg@10_with_{name}": 0.6, "kept": True}

    monkeypatch.setattr(fit_steps, "validation_check", check)
    rec = small(tiny_llm(text), cooccurrence_factors=4, text_factors=6).fit(X, item_text=text)
    histories, before, factor_neighbours = seen["factors"]
    torch.testing.assert_close(seen["text_factors"][1] - before, rec.towers_.factors.score(histories))
    # only the text factors are also checked on the validation items as if added after fit
    texts = rec.towers_.texts[:rec.backbone_.n_items_]
    assert factor_neighbours is None and np.array_equal(seen["text_factors"][2], nearest_other_items(texts))


@pytest.mark.parametrize("kept", [True, False])
def test_the_text_factors_are_appended_only_when_they_pass_the_check(monkeypatch, kept):
    X, _, text = synthetic_split()
    monkeypatch.setattr(fit_steps, "validation_check", mocked_check(kept))
    rec = small(tiny_llm(text), cooccurrence_factors=0, text_factors=5).fit(X, item_text=text)
    assert (rec.towers_.text_factors is not None) is kept
    assert rec.towers_.item_cf.shape[2] == rec.backbone_.item_embeddings().shape[1] + (5 if kept else 0)
    assert rec.training_log_[0]["text_factors"]["kept"] is kept


def test_no_text_factors_without_words_or_when_off():
    X, _, text = synthetic_split()
    llm = tiny_llm(text)
    rec = small(llm).fit(X, item_text=text)  # off by default, and with weight 0
    assert rec.towers_.text_factors is None and "text_factors" not in rec.training_log_[0]
    rec = small(llm, text_factors=4, text_factor_weight=0.0).fit(X, item_text=text)
    assert rec.towers_.text_factors is None and "text_factors" not in rec.training_log_[0]
    with pytest.warns(UserWarning, match="text factors: no item text holds a word"):
        rec = small(llm, text_factors=4).fit(X)
    assert rec.towers_.text_factors is None


def test_an_added_item_borrows_its_neighbour_s_id_and_keeps_its_own_words(fitted):
    from rarec.align._cold_items import nearest_known_items

    rec = copy.deepcopy(fitted[0])
    towers = rec.towers_
    new_text = ItemText(towers.texts[3].title + " " + towers.texts[20].title, towers.texts[3].categories)
    neighbour = nearest_known_items(towers.texts + [new_text], towers.n_items)[0]
    (added,) = towers.add_items([new_text])
    borrowed = towers.item_cf.shape[2] - towers.text_factors.rank
    torch.testing.assert_close(towers.item_cf[added, 0, :borrowed], towers.item_cf[neighbour, 0, :borrowed])
    torch.testing.assert_close(towers.item_cf[added, 0, borrowed:], towers.text_factors.for_texts([new_text])[0])
    assert not torch.allclose(towers.item_cf[added, 0, borrowed:], towers.item_cf[neighbour, 0, borrowed:])


def test_saved_and_loaded_the_text_factors_rank_the_same(fitted, tmp_path):
    rec, _, test, _, llm = fitted
    rec.save(tmp_path / "m")
    back = RARecommender.load(tmp_path / "m", llm=llm)
    torch.testing.assert_close(back.towers_.text_factors.components, rec.towers_.text_factors.components)
    torch.testing.assert_close(back.towers_.item_cf, rec.towers_.item_cf)
    assert back.score(test) == rec.score(test)
