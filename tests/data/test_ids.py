import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rarec import DataFormatError
from rarec.data import IdIndex


def test_sorted_unique_encoding_and_decoding():
    index, codes = IdIndex.from_values(["b", "a", "c", "a"], kind="user")
    assert index.ids.tolist() == ["a", "b", "c"]
    assert codes.tolist() == [1, 0, 2, 0]
    assert index.decode(codes).tolist() == ["b", "a", "c", "a"]
    assert index.encode(["c", "a"]).tolist() == [2, 0]


def test_integral_floats_become_ints_and_numpy_ints_match_python_ints():
    index, codes = IdIndex.from_values(np.array([3.0, 1.0, 3.0]))
    assert index.dtype_name == "int"
    assert index.encode([np.int32(3), 1]).tolist() == [1, 0]
    assert 3 in index and np.int64(1) in index and "3" not in index


def test_unknown_id_raises_keyerror_naming_it_or_masks():
    index, _ = IdIndex.from_values([1, 2], kind="item")
    with pytest.raises(KeyError, match="unknown item id 7"):
        index.encode([1, 7])
    assert index.encode([1, 7], unknown="mask").tolist() == [0, -1]


def test_decode_out_of_range_is_an_indexerror():
    index, _ = IdIndex.from_values([1, 2], kind="item")
    with pytest.raises(IndexError, match="index 5 is out of range for 2 items"):
        index.decode([5])


@pytest.mark.parametrize(
    "values, message",
    [
        ([1, "a"], "mix integers"),
        ([1, None], "row 2.*missing id"),
        (np.array([1.0, np.nan]), "row 2.*missing id"),
        (np.array([1.5, 2.0]), "not an integer"),
        ([1, 2.5], "integers or strings"),
        ([(1, 2)], "one-dimensional"),
        ([{1: 2}], "integers or strings"),
    ],
)
def test_bad_ids_raise_with_the_row(values, message):
    with pytest.raises(DataFormatError, match=message):
        IdIndex.from_values(values, kind="user")


def test_duplicate_ids_in_constructor_are_rejected():
    with pytest.raises(DataFormatError, match="not unique"):
        IdIndex([1, 1])


@given(st.one_of(st.lists(st.integers(-(2**62), 2**62), min_size=1), st.lists(st.text(min_size=1), min_size=1)))
def test_round_trip_property(values):
    index, codes = IdIndex.from_values(values)
    assert len(index) == len(set(values))
    assert codes.min() >= 0 and codes.max() < len(index)
    assert index.decode(codes).tolist() == list(values)
    assert index.encode(values).tolist() == codes.tolist()
