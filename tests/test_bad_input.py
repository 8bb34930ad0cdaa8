"""The catalogue of bad or unusual input: one case per row of docs/bad-input.md, each with its outcome.

A case either raises a named error whose message says what and where, or
works in a documented way. ``test_every_case_is_documented`` keeps the page and
this table in step.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rarec import DataFormatError, ModelFormatError, RARecommender
from rarec.data import InteractionLog, make_interactions
from rarec.llm import LLMLoadError
from rarec.testing import tiny_llm

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"


@pytest.fixture(scope="module")
def world():
    log, text = make_interactions(n_users=30, n_items=40, random_state=0)
    llm = tiny_llm(text)

    def make(**kw):
        params = dict(llm=llm, backbone="bpr", backbone_params={"dim": 8}, cf_epochs=1, epochs=1,
                      max_train_samples=16, sample_fraction=None, batch_size=4, verbose=0, random_state=0)
        return RARecommender(**{**params, **kw})

    X = log.to_array()
    return X, text, make, make().fit(X, item_text=text)


def titles(text, value=None):
    return {i: (t.title if value is None else value) for i, t in text.items()}


# (case, action(X, text, make, fitted, tmp_path), expected error or None, message pattern or check)
RAISES = [
    ("empty log", lambda X, t, make, rec, tmp: make().fit(np.empty((0, 2))), DataFormatError,
     "interaction log is empty"),
    ("a single item", lambda X, t, make, rec, tmp: make().fit([(u, 1) for u in range(5)]), ValueError,
     "no user has two or more training interactions once each user's last interaction is held out"),
    ("ids mixing ints and strings", lambda X, t, make, rec, tmp: make().fit([(1, 1), ("a", 2)]), DataFormatError,
     "user ids mix integers .*row 1.* and strings .*row 2"),
    ("None ids", lambda X, t, make, rec, tmp: make().fit([(1, 1), (None, 2)]), DataFormatError,
     "row 2, column 'user ids': missing id"),
    ("NaN ids", lambda X, t, make, rec, tmp: make().fit(np.array([[1, 1], [np.nan, 2]])), DataFormatError,
     "NaN or infinity .*row 2, column 1"),
    ("timestamps missing for some rows", lambda X, t, make, rec, tmp: make().fit([(1, 1, 1.0), (1, 2, None)]),
     DataFormatError, "row 2, column 'timestamp'"),
    ("item text with unknown ids", lambda X, t, make, rec, tmp: make().fit(X, item_text={**titles(t), 99999: "x"}),
     DataFormatError, "1 item id.* not in the interactions .*99999"),
    ("item text with only empty strings", lambda X, t, make, rec, tmp: make().fit(X, item_text=titles(t, "")),
     ValueError, "item_text holds no titles"),
    ("k <= 0", lambda X, t, make, rec, tmp: rec.recommend(X[0, 0], k=0), ValueError,
     r"'k' parameter .* int in \[1, 40\]. Got 0"),
    ("k larger than the catalogue", lambda X, t, make, rec, tmp: rec.recommend(X[0, 0], k=41), ValueError,
     r"'k' parameter .* int in \[1, 40\]. Got 41"),
    ("a user not seen in fit", lambda X, t, make, rec, tmp: rec.predict([123456]), KeyError,
     "unknown user id 123456.*histories="),
    ("a prompt template missing its placeholder", lambda X, t, make, rec, tmp: make(user_template="hi").fit(X),
     ValueError, "user_template.*placeholder {history}"),
    ("an LLM path that does not exist", lambda X, t, make, rec, tmp: make(llm=str(tmp / "nope")).fit(X, item_text=t),
     LLMLoadError, "no such model folder: .*nope"),
    ("a truncated GGUF file", lambda X, t, make, rec, tmp: make(llm=truncated_gguf(tmp)).fit(X, item_text=t),
     LLMLoadError, "m.gguf is not a readable GGUF model"),
    ("a model folder from a newer rarec", lambda X, t, make, rec, tmp: RARecommender.load(newer_model(rec, tmp)),
     ModelFormatError, "model format 99.*Upgrade rarec"),
    ("a damaged model file", lambda X, t, make, rec, tmp: RARecommender.load(damaged_model(rec, tmp)),
     ModelFormatError, "does not match the digest"),
]


def truncated_gguf(tmp):
    path = tmp / "m.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 20)
    return str(path)


def newer_model(rec, tmp):
    path = rec.save(tmp / "model")
    config = json.loads((path / "config.json").read_text())
    config["format_version"] = 99
    (path / "config.json").write_text(json.dumps(config))
    return path


def damaged_model(rec, tmp):
    path = rec.save(tmp / "model")
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return path


@pytest.mark.parametrize("case, action, error, message", RAISES, ids=[c[0] for c in RAISES])
def test_bad_input_raises_a_named_error(world, tmp_path, case, action, error, message):
    X, text, make, rec = world
    with pytest.raises(error, match=message):
        action(X, text, make, rec, tmp_path)


def test_all_interactions_by_one_user_still_fit(world):
    _, text, make, _ = world
    rec = make().fit([(1, i) for i in range(6)])
    assert rec.n_users_ == 1 and rec.n_items_ == 6
    assert rec.predict([1]).shape == (1, 6)  # k=10 is capped at the catalogue's size
    assert list(rec.predict([1])[0]) == [None] * 6  # the user has seen every item


def test_a_single_user_ranks_only_items_they_have_not_seen(world):
    _, _, make, _ = world
    rec = make(k=3).fit([(1, i) for i in range(8)] + [(2, 0), (2, 1)])
    assert set(rec.predict([2])[0]).isdisjoint({0, 1})


def test_duplicate_interactions_are_kept_unless_dropped_with_a_count():
    rows = [(1, 1, 1.0), (1, 1, 1.0), (1, 2, 2.0)]
    assert len(InteractionLog.from_any(rows)) == 3
    with pytest.warns(UserWarning, match="removed 1 repeated"):
        assert len(InteractionLog.from_any(rows, drop_duplicates=True)) == 2


def test_timestamps_out_of_order_or_negative_only_order_events():
    log = InteractionLog.from_any([(1, "b", 5.0), (1, "a", -3.0), (1, "c", 0.0)])
    assert log.items.decode(log.user_sequences()[0]).tolist() == ["a", "c", "b"]


def test_very_long_and_non_utf8_item_text_is_cut_to_the_token_budget(world):
    X, text, make, _ = world
    rec = make(max_prompt_tokens=24).fit(X, item_text={**titles(text, "word " * 5000), next(iter(text)): b"caf\xe9"})
    assert max(len(t) for t in rec.towers_.item_tokens) <= 24
    assert "caf\ufffd" in rec.prompts_.titles[rec.items_.encode([next(iter(text))])[0]]


def test_a_user_who_has_seen_every_item_gets_fewer_than_k(world):
    _, _, _, rec = world
    ids, scores = rec.recommend(histories=[list(rec.items_.ids[:-2])], k=5)
    assert list(ids[0][2:]) == [None] * 3 and np.isinf(scores[0][2:]).all()
    assert ids[0][0] is not None


def test_every_case_is_documented():
    page = DOCS.read_text()
    cases = [c[0] for c in RAISES] + ["all interactions by one user", "duplicate interactions",
                                      "timestamps out of order or negative", "very long item text",
                                      "non-UTF-8 item text", "a user who has seen every item",
                                      "a user without any history", "new items with text but no interactions",
                                      "new items with neither text nor interactions"]
    missing = [c for c in cases if not re.search(re.escape(c), page, re.I)]
    assert not missing, f"docs/bad-input.md does not mention: {missing}"


def test_ids_written_two_ways_are_one_id_in_files_and_an_error_in_python(tmp_path):
    from rarec.data import InteractionLog, read_csv

    path = tmp_path / "ratings.csv"
    path.write_text("user_id,item_id\n12,1\n12.0,2\n3,1\n3.0,2\n")
    assert read_csv(path).interactions.n_users == 2
    with pytest.raises(DataFormatError, match="'12' and '12.0' are one number written two ways"):
        InteractionLog.from_any([("12", "a"), ("12.0", "b")])
    assert InteractionLog.from_any([("007", "a"), ("7", "b")]).n_users == 2  # codes keep their zeros


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
    from rarec.data import read_csv

    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffuser_id,item_id\n1,1\n2,2\n".encode("utf-8"))
    assert read_csv(path).interactions.users.ids.tolist() == [1, 2]
    bare = tmp_path / "bare.csv"
    bare.write_bytes("\ufeff0,1\n1,2\n".encode("utf-8"))
    assert read_csv(bare, header=False, user_col=0, item_col=1, time_col=None).interactions.users.ids.tolist() == [0, 1]


def test_two_titles_for_one_item_warn_and_keep_the_first(tmp_path):
    from rarec.data import read_item_text_csv

    path = tmp_path / "items.csv"
    path.write_text("item_id,title\n1,First\n2,Other\n1,Second\n")
    with pytest.warns(UserWarning, match=r"1 row\(s\) repeat an item id .*first: 1.* row 4"):
        table = read_item_text_csv(path)
    assert len(table) == 2 and dict(table.items())[1].title == "First"


def test_a_boolean_is_not_a_user_id(world):
    with pytest.raises(KeyError, match="unknown user id True.*booleans are not ids"):
        world[3].predict([True])


def test_one_user_with_two_interactions_is_told_that_the_last_is_held_out():
    from rarec.testing import tiny_llm

    with pytest.raises(ValueError, match="once each user's last interaction is held out for validation"):
        RARecommender(llm=tiny_llm(None), cf_epochs=1, verbose=0).fit([(1, 1), (1, 2), (2, 3)])
