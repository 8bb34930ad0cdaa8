import numpy as np
import pytest

from rarec.cf import PopularityRecommender
from rarec.data import make_interactions
from rarec.metrics import full_ranking_metrics
from rarec.model_selection import leave_last_out


def test_deterministic_for_a_seed(synthetic):
    again = make_interactions(n_users=200, n_items=80, n_categories=4, random_state=7)
    np.testing.assert_array_equal(again.interactions.item_codes, synthetic.interactions.item_codes)
    np.testing.assert_array_equal(again.interactions.timestamps, synthetic.interactions.timestamps)
    other = make_interactions(n_users=200, n_items=80, n_categories=4, random_state=8)
    assert not np.array_equal(other.interactions.item_codes[:50], synthetic.interactions.item_codes[:50])


def test_titles_carry_their_category_words(synthetic):
    from rarec.data._synthetic import _CATEGORY_WORDS

    log, text = synthetic
    assert len(text) == log.n_items
    for item_id, item in text.items():
        (category,) = item.categories
        assert any(word in item.title for word in _CATEGORY_WORDS[category]), item


def test_users_never_repeat_and_stay_in_favourite_categories(synthetic):
    log, text = synthetic
    share_top2 = []
    for seq in log.user_sequences():
        assert len(set(seq.tolist())) == len(seq)
        cats = [text[i].categories[0] for i in log.items.decode(seq).tolist()]
        _, counts = np.unique(cats, return_counts=True)
        share_top2.append(np.sort(counts)[-2:].sum() / len(cats))
    assert np.mean(share_top2) > 0.8  # two favourite categories dominate (4 exist)


def _markov_scores(train):
    """Item-to-item transition counts: the planted sequential pattern, learned by counting."""
    n = train.n_items
    trans = np.zeros((n, n))
    last = np.zeros(train.n_users, dtype=np.int64)
    for u, seq in enumerate(train.user_sequences()):
        np.add.at(trans, (seq[:-1], seq[1:]), 1.0)
        last[u] = seq[-1]
    return lambda users: trans[last[users]] + 1e-3 * train.item_counts()[None, :]


def test_a_sequential_model_beats_popularity_by_far(synthetic):
    log, _ = synthetic
    split = leave_last_out(log)
    pop = full_ranking_metrics(PopularityRecommender().fit(split.before_test).score_users, split.test,
                               split.before_test, ks=[10])
    markov = full_ranking_metrics(_markov_scores(split.before_test), split.test, split.before_test, ks=[10])
    assert markov["ndcg@10"] > 2 * pop["ndcg@10"]
    assert markov["hr@10"] > pop["hr@10"] + 0.2


@pytest.mark.parametrize("kwargs, message", [
    ({"n_users": 0}, "'n_users' parameter"), ({"n_categories": 11}, "'n_categories'"),
    ({"p_noise": 2.0}, "'p_noise'"), ({"n_items": 5, "n_categories": 3}, "at least 2 \\* n_categories"),
    ({"max_length": 5, "min_length": 6}, "'max_length'"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_interactions(**kwargs)
