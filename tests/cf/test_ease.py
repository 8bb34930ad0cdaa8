"""EASE: Steck's closed form, used as the co-occurrence teacher."""

import numpy as np
import pytest
import torch

from rarec.cf import EASE, history_matrix


def test_ease_is_the_closed_form_ridge_regression_with_a_zero_diagonal():
    histories = [np.array([0, 1]), np.array([1, 0, 2, 0]), np.array([0, 1, 3]), np.array([2, 3])]
    ease = EASE(l2=0.5).fit(histories, n_items=5)
    x = np.zeros((4, 5))
    for u, h in enumerate(histories):
        x[u, h] = 1.0  # an item repeated in a history counts once
    inverse = np.linalg.inv(x.T @ x + 0.5 * np.eye(5))
    np.testing.assert_allclose(ease.weights_.numpy(), np.eye(5) - inverse / np.diag(inverse), atol=1e-5)
    assert torch.all(torch.diagonal(ease.weights_) == 0) and torch.all(ease.weights_[:, 4] == 0)
    # the item that always comes with item 0 scores highest for a history of item 0
    scores = ease.score([np.array([0])])[0]
    assert int(scores.argmax()) == 1
    # scores of some candidates are those columns of every item's scores; a sparse history matrix reads the same
    rows = history_matrix([np.array([0, 2]), np.array([], dtype=np.int64)], 5)
    torch.testing.assert_close(ease.score(rows, np.array([3, 1])), ease.score(rows)[:, [3, 1]])
    assert torch.all(ease.score(rows)[1] == 0)  # an empty history scores nothing


def test_ease_refuses_catalogues_too_large_for_its_dense_weights(monkeypatch):
    monkeypatch.setattr(EASE, "MAX_ITEMS", 3)
    with pytest.raises(ValueError, match="up to 3 items"):
        EASE().fit([np.array([0, 1])], n_items=4)


@pytest.mark.parametrize("mean, chunk", [(False, 256), (True, 256), (False, 2), (True, 3)])
def test_ease_scores_are_the_dense_product_of_the_history_rows_and_the_weights(monkeypatch, mean, chunk):
    monkeypatch.setattr(EASE, "SCORE_CHUNK", chunk)  # histories scored a few at a time give the same scores
    rng = np.random.default_rng(0)
    n_items = 40
    histories = [rng.choice(n_items, size, replace=True) for size in (0, 1, 3, 7, 12, 0, 25)]
    ease = EASE(l2=2.0).fit(histories[1:], n_items=n_items)
    ease.weights_ = ease.weights_.t().contiguous().t()  # column-major, as SciPy's inverse comes: the layout is free
    rows = history_matrix(histories, n_items, mean=mean)
    dense = torch.as_tensor(rows.toarray()) @ ease.weights_  # what the scores are, computed the slow way
    torch.testing.assert_close(ease.score(rows), dense)
    candidates = np.array([39, 0, 5, 5, 17])  # any order, repeats allowed
    torch.testing.assert_close(ease.score(rows, candidates), dense[:, candidates])
    assert ease.score(rows, candidates).dtype == torch.float32 and ease.score(rows).shape == (7, n_items)
    torch.testing.assert_close(ease.score(histories, candidates), ease.score(history_matrix(histories, n_items),
                                                                             candidates))
    empty = history_matrix([np.array([], dtype=np.int64)] * 2, n_items)  # no history names any item
    assert torch.all(ease.score(empty, candidates) == 0) and ease.score(empty, candidates).shape == (2, 5)
    assert ease.score(history_matrix([], n_items)).shape == (0, n_items)
    ease.weights_ = ease.weights_.contiguous()  # row-major weights score the same
    torch.testing.assert_close(ease.score(rows, candidates), dense[:, candidates])
