import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV

from rarec.data import InteractionLog
from rarec.model_selection import LeaveLastOut, TemporalSplit, leave_last_out, temporal_split


def test_leave_last_out_parts_and_short_users():
    # user 1: 4 items; user 2: 2 items (too short for train+valid+test -> train only)
    X = [(1, "a", 1), (1, "b", 2), (1, "c", 3), (1, "d", 4), (2, "a", 1), (2, "b", 2)]
    train, valid, test = leave_last_out(X)
    log = train  # shares id maps
    decode = lambda part: sorted(zip(log.users.decode(part.user_codes).tolist(), log.items.decode(part.item_codes).tolist()))  # noqa: E731
    assert decode(test) == [(1, "d")]
    assert decode(valid) == [(1, "c")]
    assert decode(train) == [(1, "a"), (1, "b"), (2, "a"), (2, "b")]
    no_valid = leave_last_out(X, n_valid=0)
    assert no_valid.valid is None and decode(no_valid.test) == [(1, "d"), (2, "b")]


def test_ties_are_broken_by_row_order_like_a_stable_sort():
    X = [(1, "x", 5), (1, "y", 5), (1, "z", 1), (1, "w", 2)]
    split = leave_last_out(X, n_valid=0)
    assert split.test.items.decode(split.test.item_codes).tolist() == ["y"]


def test_leave_last_out_cv_folds_never_train_on_the_future():
    X = np.array([[1, 10, 1], [1, 11, 2], [1, 12, 3], [1, 13, 4], [2, 10, 5], [2, 12, 6]])
    folds = list(LeaveLastOut(n_splits=2).split(X))
    assert [(tr.tolist(), te.tolist()) for tr, te in folds] == [
        ([0, 1, 2, 4], [3, 5]),
        ([0, 1, 4, 5], [2]),  # user 2 is too short for fold 1: all of it stays in train
    ]
    assert LeaveLastOut(3).get_n_splits() == 3
    assert "LeaveLastOut(n_splits=1)" == repr(LeaveLastOut())
    with pytest.raises(ValueError, match="'n_splits' parameter of LeaveLastOut"):
        list(LeaveLastOut(0).split(X))


def test_temporal_split_by_user_and_globally():
    X = np.array([[1, 10, 1], [1, 11, 2], [1, 12, 3], [1, 13, 4], [2, 10, 5], [2, 11, 9]])
    (tr, te), = TemporalSplit(test_size=0.5).split(X)
    assert te.tolist() == [2, 3, 5]
    (tr, te), = TemporalSplit(test_size=0.3, by="global").split(X)
    assert te.tolist() == [4, 5]  # after the cut-off time 4
    train, test = temporal_split(X, 0.5)
    assert len(train) == 3 and len(test) == 3
    with pytest.raises(ValueError, match="'test_size' parameter of TemporalSplit"):
        list(TemporalSplit(test_size=1.5).split(X))
    with pytest.raises(ValueError, match="needs timestamps"):
        list(TemporalSplit(by="global").split(X[:, :2]))


class _CountingEstimator(BaseEstimator):
    """Scores the held-out rows by how many of them are each user's most popular-in-train item."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y=None):
        self.train_max_time_ = {u: t for u, _, t in sorted(map(tuple, X), key=lambda r: r[2])}
        return self

    def score(self, X, y=None):
        # every held-out row must be later than the same user's training rows
        return float(np.mean([t >= self.train_max_time_.get(u, -np.inf) for u, _, t in X])) * self.alpha


def test_grid_search_cv_accepts_the_splitter():
    X = np.array([[u, i, u * 10 + i] for u in range(5) for i in range(4)])
    search = GridSearchCV(_CountingEstimator(), {"alpha": [1.0, 2.0]}, cv=LeaveLastOut()).fit(X)
    assert search.best_params_ == {"alpha": 2.0}
    assert search.cv_results_["split0_test_score"].tolist() == [1.0, 2.0]


logs = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 5)), min_size=1, max_size=60
)


@settings(max_examples=60, deadline=None)
@given(logs, st.integers(1, 2), st.integers(0, 2))
def test_split_invariants(rows, n_test, n_valid):
    log = InteractionLog.from_any(rows)
    train, valid, test = leave_last_out(log, n_test=n_test, n_valid=n_valid)
    parts = [train, test] + ([valid] if valid is not None else [])
    assert sum(len(p) for p in parts) == len(log)  # every interaction in exactly one part
    pos = log.positions()
    for part in parts[1:]:
        for u in np.unique(part.user_codes):
            # held-out rows come after every training row of the same user, in sequence order
            assert train.timestamps[train.user_codes == u].max() <= part.timestamps[part.user_codes == u].min()
    assert set(np.unique(log.user_codes)) == set(np.unique(train.user_codes))  # nobody dropped
    for tr_idx, te_idx in LeaveLastOut(n_splits=2).split(rows):
        assert np.intersect1d(tr_idx, te_idx).size == 0
        for u in np.unique(log.user_codes[te_idx]):
            assert pos[tr_idx][log.user_codes[tr_idx] == u].max() < pos[te_idx][log.user_codes[te_idx] == u].min()
