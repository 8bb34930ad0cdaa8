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
