import pytest

from rarec import DataFormatError
from rarec.data import Dataset, InteractionLog, ItemTextTable, k_core_filter


def test_filter_repeats_to_a_fixed_point():
    # user 3 has 1 item; removing it leaves item 'c' with 1 interaction, which then goes too,
    # and that leaves user 2 with 1 interaction: three rounds.
    rows = [(1, "a"), (1, "b"), (2, "a"), (2, "c"), (3, "c"), (4, "a"), (4, "b")]
    log = InteractionLog.from_any(rows)
    once = k_core_filter(log, 2)
    assert once.users.ids.tolist() == [1, 4]
    assert once.items.ids.tolist() == ["a", "b"]
    for u_count in once.user_lengths():
        assert u_count >= 2
    # A fixed point: filtering again changes nothing.
    again = k_core_filter(once, 2)
    assert len(again) == len(once)


def test_dataset_k_core_keeps_text_of_survivors():
    log = InteractionLog.from_any([(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "z")])
    data = Dataset(log, ItemTextTable({"a": "A", "b": "B", "z": "Z"})).k_core(2)
    assert sorted(data.item_text) == ["a", "b"]


def test_bad_thresholds_and_emptying_filter():
    log = InteractionLog.from_any([(1, 1)])
    with pytest.raises(ValueError, match="The 'k' parameter of k_core_filter must be an int in \\[1, inf\\). Got 0"):
        k_core_filter(log, 0)
    with pytest.raises(DataFormatError, match="removed every interaction"):
        k_core_filter(log, 2)
