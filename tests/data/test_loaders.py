"""Every loader, on small fixture files written by the tests themselves."""

import gzip
import json

import numpy as np
import pytest

from rarec import DataFormatError
from rarec.data import (
    load_dataset,
    read_amazon,
    read_csv,
    read_movielens,
    read_recbole,
)


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# ---------------------------------------------------------------- CSV / TSV
def test_csv_with_header_and_item_file(tmp_path):
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\n1,10,5\n1,11,3\n2,10,4\n")
    items = write(tmp_path / "items.csv", "item_id,title,genres\n10,Alpha,a|b\n11,Beta,\n12,Unused,c\n")
    with pytest.warns(UserWarning, match="1 of 3 item texts"):
        data = read_csv(inter, items=items, categories_col="genres")
    log, text = data
    assert (log.n_users, log.n_items, len(log)) == (2, 2, 3)
    assert log.users.dtype_name == "int"
    assert [log.items.decode(s).tolist() for s in log.user_sequences()] == [[11, 10], [10]]
    assert text[10].categories == ("a", "b") and 12 not in text


def test_tsv_by_position_without_header_and_string_ids(tmp_path):
    inter = write(tmp_path / "log.tsv", "u1\t2020-01-02\ti1\nu1\t2020-01-01\ti2\n")
    log, text = read_csv(inter, header=False, user_col=0, item_col=2, time_col=1)
    assert text is None
    assert log.users.dtype_name == "str"
    assert log.items.decode(log.user_sequences()[0]).tolist() == ["i2", "i1"]


def test_csv_custom_column_names_and_no_timestamp(tmp_path):
    inter = write(tmp_path / "log.csv", "who,what\na,x\nb,y\na,y\n")
    log, _ = read_csv(inter, user_col="who", item_col="what", time_col=None)
    assert not log.has_timestamps and len(log) == 3


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        ("user_id,item_id\n", {}, "holds no interactions"),
        ("", {}, "holds no interactions"),
        ("user,item_id\n1,2\n", {}, r"no column 'user_id'.*header has \['user', 'item_id'\]"),
        ("user_id,item_id,timestamp\n1,2,3\n1,3,soon\n", {}, r"row 3, column 'timestamp'.*soon"),
        ("user_id,item_id\n1,2\n3\n", {}, r"row 3: has 1 field"),
        ("user_id,item_id\n1,2\n,3\n", {}, r"row 3: empty user id"),
        ("user_id,item_id\n1,2\n", {"time_col": "when"}, r"no column 'when'"),
    ],
)
def test_csv_errors_name_file_row_and_column(tmp_path, content, kwargs, message):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_csv(path, **kwargs)
    assert "bad.csv" in str(info.value)


def test_wrong_encoding_is_named_with_the_row(tmp_path):
    path = write(tmp_path / "latin.csv", "user_id,item_id\n1,Café\n", encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"latin.csv, row 2: bytes that are not valid utf-8.*encoding="):
        read_csv(path)
    log, _ = read_csv(path, encoding="latin-1")
    assert log.items.ids.tolist() == ["Café"]


def test_missing_file_is_a_filenotfounderror(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_csv(tmp_path / "nope.csv")


# ------------------------------------------------------------------ RecBole
RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t4\t881250940\n"
)
RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery\n999\tUnseen\t1990\tDrama\n"
)


def test_recbole_folder_with_item_file(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    write(folder / "toy.inter", RECBOLE_INTER)
    write(folder / "toy.item", RECBOLE_ITEM)
    with pytest.warns(UserWarning, match="1 of 3"):
        log, text = read_recbole(folder)
    assert (log.n_users, log.n_items, len(log)) == (2, 2, 3)
    assert log.items.decode(log.user_sequences()[1]).tolist() == [302, 242]  # user 196, by time
    assert text[302].title == "L.A. Confidential"
    assert text[302].categories == ("Crime", "Film-Noir", "Mystery")
    with pytest.warns(UserWarning):
        assert read_recbole(folder / "toy.inter").interactions.n_items == 2
    with pytest.warns(UserWarning):
        assert load_dataset(folder).interactions.n_users == 2


def test_recbole_categories_sep_keeps_a_category_path_whole(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    write(folder / "shop.inter", "user_id:token\titem_id:token\n1\tA\n1\tB\n")
    write(folder / "shop.item", "item_id:token\ttitle:token_seq\tcategories:token_seq\n"
                                "A\tGel 1oz\tBeauty Hair Care Creams, Gels & Lotions\nB\tSoap\tBeauty|Bath\n")
    assert read_recbole(folder).item_text["A"].categories[-2:] == ("&", "Lotions")  # RecBole's whitespace split
    whole = read_recbole(folder, categories_sep="").item_text
    assert whole["A"].categories == ("Beauty Hair Care Creams, Gels & Lotions",)
    assert whole["A"].render() == "Gel 1oz (Beauty Hair Care Creams, Gels & Lotions)"
    assert read_recbole(folder, categories_sep="|").item_text["B"].categories == ("Beauty", "Bath")


def test_recbole_bad_header_and_missing_field(tmp_path):
    bad = write(tmp_path / "a.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataFormatError, match=r"row 1, column 1: header field 'user_id' is not 'name:type'"):
        read_recbole(bad)
    nouser = write(tmp_path / "b.inter", "uid:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFormatError, match=r"no user field 'user_id'"):
        read_recbole(nouser)
    notime = write(tmp_path / "c.inter", "user_id:token\titem_id:token\n1\t2\n")
    assert not read_recbole(notime).interactions.has_timestamps


# ---------------------------------------------------------------- MovieLens
def test_movielens_100k(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t300\n1\t20\t3\t100\n2\t10\t4\t200\n")
    flags = ["0"] * 19
    flags_a = flags.copy()
    flags_a[1] = flags_a[5] = "1"  # Action, Comedy
    lines = [
        "10|Amélie (2001)|01-Jan-2001||http://x|" + "|".join(flags_a),
        "20|Heat (1995)|01-Jan-1995||http://y|" + "|".join(flags),
    ]
    write(tmp_path / "u.item", "\n".join(lines) + "\n", encoding="latin-1")
    log, text = read_movielens(tmp_path)
    assert log.users.dtype_name == "int" and len(log) == 3
    assert log.items.decode(log.user_sequences()[0]).tolist() == [20, 10]
    assert text[10].title == "Amélie (2001)" and text[10].categories == ("Action", "Comedy")
    assert text[20].categories == ()
    assert load_dataset(tmp_path / "u.data").interactions.n_items == 2


def test_movielens_1m(tmp_path):
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(tmp_path / "movies.dat", "1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's\n",
          encoding="latin-1")
    log, text = read_movielens(tmp_path)
    assert len(log) == 2 and text[661].categories == ("Animation", "Children's")


def test_movielens_csv_release(tmp_path):
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Toy Story (1995)",Adventure|Comedy\n3,"Heat, the (1995)",Crime\n')
    log, text = read_movielens(tmp_path)
    assert text[3].title == "Heat, the (1995)" and text[1].categories == ("Adventure", "Comedy")


def test_movielens_bad_rows(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t300\n1\t20\n")
    with pytest.raises(DataFormatError, match=r"u.data, row 2: expected 4 fields"):
        read_movielens(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="not a MovieLens release"):
        read_movielens(empty)


# ------------------------------------------------------------------- Amazon
def _reviews_2018():
    return [
        {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 1400000000},
        {"reviewerID": "A1", "asin": "B02", "overall": 3.0, "unixReviewTime": 1300000000},
        {"reviewerID": "A2", "asin": "B01", "overall": 4.0, "reviewTime": "09 13, 2009"},
    ]


@pytest.mark.parametrize("compress", [False, True])
def test_amazon_2018_reviews_and_meta(tmp_path, compress):
    body = "\n".join(json.dumps(r) for r in _reviews_2018()) + "\n"
    meta = "\n".join(json.dumps(m) for m in [
        {"asin": "B01", "title": "Wool Socks", "category": ["Clothing", "Socks"]},
        {"asin": "B02", "title": "Hat", "category": ["Clothing"]},
        {"asin": "B99", "title": "Unreviewed"},
    ]) + "\n"
    if compress:
        reviews_path = tmp_path / "reviews.json.gz"
        meta_path = tmp_path / "meta.json.gz"
        reviews_path.write_bytes(gzip.compress(body.encode()))
        meta_path.write_bytes(gzip.compress(meta.encode()))
    else:
        reviews_path = write(tmp_path / "reviews.json", body)
        meta_path = write(tmp_path / "meta.json", meta)
    with pytest.warns(UserWarning, match="skipped 1 metadata"):
        log, text = read_amazon(reviews_path, meta_path)
    assert log.users.ids.tolist() == ["A1", "A2"]
    assert log.items.decode(log.user_sequences()[0]).tolist() == ["B02", "B01"]
    assert text["B01"].render() == "Wool Socks (Clothing, Socks)"
    with pytest.warns(UserWarning):
        assert load_dataset(reviews_path, items=meta_path).interactions.n_items == 2


def test_amazon_2014_python_literal_meta_and_2023_fields(tmp_path):
    reviews = write(tmp_path / "r.jsonl", json.dumps({"user_id": "U", "parent_asin": "P1", "asin": "X",
                                                      "timestamp": 1_600_000_000_000}) + "\n")
    meta = write(tmp_path / "m.json", "{'asin': 'P1', 'title': 'Lamp', 'categories': [['Home', 'Lighting'], ['Home']]}\n")
    log, text = read_amazon(reviews, meta)
    assert log.items.ids.tolist() == ["P1"]  # 2023: parent_asin identifies the item
    assert log.timestamps[0] == 1_600_000_000.0  # milliseconds read as such
    assert text["P1"].categories == ("Home", "Lighting")


def test_amazon_truncated_gz_and_bad_lines(tmp_path):
    data = gzip.compress(("\n".join(json.dumps(r) for r in _reviews_2018() * 200) + "\n").encode())
    truncated = tmp_path / "cut.json.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="cut.json.gz: the gzip stream is truncated"):
        read_amazon(truncated)
    notgz = write(tmp_path / "plain.json.gz", "not gzip at all")
    with pytest.raises(DataFormatError, match="not a gzip file"):
        read_amazon(notgz)
    garbage = write(tmp_path / "g.json", json.dumps(_reviews_2018()[0]) + "\n{oops\n")
    with pytest.raises(DataFormatError, match=r"g.json, row 2: neither JSON"):
        read_amazon(garbage)
    nouser = write(tmp_path / "n.json", json.dumps({"asin": "B", "unixReviewTime": 1}) + "\n")
    with pytest.raises(DataFormatError, match=r"row 1: no field among \['reviewerID', 'user_id'\]"):
        read_amazon(nouser)


def test_literal_eval_never_runs_code(tmp_path):
    meta = write(tmp_path / "m.json", "__import__('os').system('echo pwned')\n")
    reviews = write(tmp_path / "r.json", json.dumps(_reviews_2018()[0]) + "\n")
    with pytest.raises(DataFormatError, match="neither JSON nor a Python dict literal"):
        read_amazon(reviews, meta)


def test_load_dataset_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        load_dataset(tmp_path, format="parquet")
    with pytest.raises(DataFormatError, match="cannot tell the format"):
        load_dataset(write(tmp_path / "x.bin", "1"))
    assert np.array_equal(
        load_dataset(write(tmp_path / "x.tsv", "user_id\titem_id\n1\t2\n")).interactions.item_codes, [0]
    )


def test_a_large_file_is_read_behind_a_progress_bar_in_bytes(tmp_path, monkeypatch):
    import rarec.data._io as io

    bars = []

    class Spy:
        def __init__(self, **kwargs):
            self.kwargs, self.n = kwargs, 0
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, k):
            self.n += k

    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id\n" + "".join(f"{i % 7},{i % 11}\n" for i in range(70_000)))
    monkeypatch.setattr(io, "tqdm", Spy)
    monkeypatch.setattr(io, "PROGRESS_MIN_BYTES", path.stat().st_size)  # just large enough
    lines = list(io.iter_lines(path))
    assert len(lines) == 70_001
    bar, = bars
    assert bar.kwargs["total"] == path.stat().st_size and bar.kwargs["disable"] is None  # shown on a terminal
    assert 0 < bar.n <= path.stat().st_size
    monkeypatch.setattr(io, "PROGRESS_MIN_BYTES", path.stat().st_size + 1)  # a smaller file: no bar
    list(io.iter_lines(path))
    assert bars[-1].kwargs["disable"] is True
