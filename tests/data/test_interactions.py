import datetime as dt
import warnings

import numpy as np
import pytest

from rarec import DataFormatError
from rarec.data import InteractionLog

pd = pytest.importorskip("pandas")


def test_sequences_are_ordered_by_time_with_ties_in_row_order():
    rows = [("u", "c", 5), ("u", "a", 1), ("u", "b", 5), ("v", "a", 2), ("u", "d", 3)]
    log = InteractionLog.from_any(rows)
    seqs = [log.items.decode(s).tolist() for s in log.user_sequences()]
    assert seqs == [["a", "d", "c", "b"], ["a"]]  # c before b: same time, c comes first in the file
    assert log.positions().tolist() == [2, 0, 3, 0, 1]


def test_without_timestamps_row_order_is_time_order():
    log = InteractionLog.from_any(np.array([[2, 9], [1, 8], [2, 7]]))
    assert not log.has_timestamps
    assert [log.items.decode(s).tolist() for s in log.user_sequences()] == [[8], [9, 7]]


def test_accepts_tuples_arrays_and_dataframes_alike():
    rows = [(1, 10, 100.0), (2, 11, 50.0), (1, 11, 200.0)]
    a = InteractionLog.from_any(rows)
    b = InteractionLog.from_any(np.array(rows))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    c = InteractionLog.from_any(frame)
    d = InteractionLog.from_any(frame[["timestamp", "item_id", "user_id"]])  # found by name, not position
    for log in (b, c, d):
        assert log.users == a.users and log.items == a.items
        np.testing.assert_array_equal(log.user_codes, a.user_codes)
        np.testing.assert_array_equal(log.item_codes, a.item_codes)
        np.testing.assert_array_equal(log.timestamps, a.timestamps)


def test_dataframe_with_datetime_column_and_missing_ids():
    frame = pd.DataFrame({"user": [1, 2], "item": ["x", "y"], "time": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    log = InteractionLog.from_any(frame)
    assert log.timestamps[1] - log.timestamps[0] == 86400.0
    bad = pd.DataFrame({"user_id": [1.0, np.nan], "item_id": [1, 2]})
    with pytest.raises(DataFormatError, match="row 2.*missing id"):
        InteractionLog.from_any(bad)


def test_iso_dates_numbers_and_datetimes_are_all_timestamps():
    when = dt.datetime(2021, 5, 1, tzinfo=dt.timezone.utc)
    log = InteractionLog.from_records([1, 1, 1], [1, 2, 3], ["2021-05-01T00:00:00Z", when.timestamp(), when])
    assert np.all(log.timestamps == when.timestamp())


@pytest.mark.parametrize(
    "X, message",
    [
        ([], "empty"),
        (np.zeros((0, 2)), "empty"),
        (np.array([1, 2, 3]), "2 columns"),
        ({"u": 1}, "got a dict"),
        ([(1, 2, "yesterday")], "row 1, column 'timestamp'.*cannot read timestamp"),
        ([(1, 2, 1.0), (1, 3, None)], "row 2, column 'timestamp'"),
        ([(1, 2), ("a", 3)], "mix integers"),
    ],
)
def test_bad_logs_raise_clear_errors(X, message):
    with pytest.raises(DataFormatError, match=message):
        InteractionLog.from_any(X)


def test_missing_dataframe_columns_are_named():
    frame = pd.DataFrame({"a": [1], "b": [2], "c": [3], "d": [4]})
    with pytest.raises(DataFormatError, match="cannot find the user and item columns"):
        InteractionLog.from_any(frame)


def test_duplicates_are_kept_by_default_and_dropped_on_request_with_a_count():
    rows = [(1, 1, 3), (1, 1, 1), (1, 2, 2)]
    assert len(InteractionLog.from_any(rows)) == 3
    with pytest.warns(UserWarning, match="removed 1 repeated"):
        log = InteractionLog.from_any(rows, drop_duplicates=True)
    assert len(log) == 2
    assert sorted(log.timestamps.tolist()) == [1.0, 2.0]  # the earliest (1, 1) is the one kept


def test_subset_shares_id_maps_and_reindexed_drops_unused():
    log = InteractionLog.from_any([(1, 1), (2, 2), (3, 3)])
    part = log.subset(np.array([0, 2]))
    assert part.n_users == 3 and len(part) == 2
    compact = part.reindexed()
    assert compact.users.ids.tolist() == [1, 3] and compact.items.ids.tolist() == [1, 3]
    np.testing.assert_array_equal(compact.to_array()[:, :2].astype(int), [[1, 1], [3, 3]])


def test_concat_and_to_csr():
    log = InteractionLog.from_any([(1, 1), (1, 2), (2, 2), (1, 1)])
    joined = InteractionLog.concat(log.subset([0, 1]), log.subset([2, 3]))
    assert len(joined) == 4
    csr = log.to_csr()
    assert csr.shape == (2, 2) and csr.toarray().tolist() == [[1, 1], [0, 1]]
    assert log.to_csr(binary=False).toarray().tolist() == [[2, 1], [0, 1]]
    other = InteractionLog.from_any([(5, 5)])
    with pytest.raises(ValueError, match="share"):
        InteractionLog.concat(log, other)


def test_no_warning_on_clean_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InteractionLog.from_any([(1, 1, 1), (2, 1, 2)])
