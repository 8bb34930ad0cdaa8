import pytest

from rarec import DataFormatError
from rarec.data import IdIndex, ItemText, ItemTextTable

pd = pytest.importorskip("pandas")


def test_forms_of_text_and_rendering():
    table = ItemTextTable({1: "  Toy   Story ", 2: ("GoldenEye", ["Action", "Thriller"]),
                           3: {"title": "Heat", "categories": "Crime"}, 4: "", 5: None,
                           6: ItemText("Fargo", ("Crime",))})
    assert table[1].title == "Toy Story"
    assert table[2].render() == "GoldenEye (Action, Thriller)"
    assert table[3].categories == ("Crime",)
    assert 4 not in table and 5 not in table  # empty title counts as no text
    assert len(table) == 4


def test_align_gives_index_order_and_none_for_missing():
    items = IdIndex([1, 2, 9])
    table = ItemTextTable({1: "a", 9: "c"})
    aligned = table.align(items)
    assert [t.title if t else None for t in aligned] == ["a", None, "c"]
    assert table.coverage(items) == pytest.approx(2 / 3)


def test_unknown_items_raise_or_warn():
    items = IdIndex(["1", "2"])
    table = ItemTextTable({1: "a", 2: "b"})
    with pytest.raises(DataFormatError, match="2 item id.*first: 1, 2\\).*int vs str"):
        table.align(items)
    with pytest.warns(UserWarning, match="ignored the text of 2 item"):
        assert table.align(items, on_unknown="warn") == [None, None]


def test_from_any_rows_and_frames():
    rows = ItemTextTable.from_any([(1, "A", ["x"]), (2, "B")])
    assert rows[1].categories == ("x",) and rows[2].title == "B"
    frame = ItemTextTable.from_any(pd.DataFrame({"item_id": [1], "title": ["A"], "genres": [["x", "y"]]}))
    assert frame[1].render() == "A (x, y)"
    with pytest.raises(DataFormatError, match="'item_id' and a 'title'"):
        ItemTextTable.from_any(pd.DataFrame({"id": [1], "name2": ["A"]}))
    with pytest.raises(DataFormatError, match="row 1"):
        ItemTextTable.from_any([(1,)])
    with pytest.raises(DataFormatError, match="must be a str"):
        ItemTextTable({1: 3.5})


def test_non_utf8_bytes_are_replaced_not_fatal():
    table = ItemTextTable({1: b"Caf\xe9"})
    assert table[1].title.startswith("Caf")
