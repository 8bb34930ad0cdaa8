"""MovieLens-100K from ../shared/data (never copied into the project); skipped when absent."""

import pytest

from rarec.data import load_dataset, read_recbole
from rarec.model_selection import leave_last_out

pytestmark = pytest.mark.real_data


def test_ml100k_loads_with_every_title(ml100k_dir):
    log, text = read_recbole(ml100k_dir)
    assert (log.n_users, log.n_items, len(log)) == (943, 1682, 100_000)
    assert len(text) == 1682 and text.coverage(log.items) == 1.0
    assert text[1].title == "Toy Story"
    assert load_dataset(ml100k_dir).interactions.n_users == 943


def test_ml100k_five_core_matches_recbole(ml100k_dir):
    data = read_recbole(ml100k_dir).k_core(5)
    log = data.interactions
    assert (log.n_users, log.n_items, len(log)) == (943, 1349, 99_287)
    assert len(data.item_text) == 1349
    split = leave_last_out(log)
    assert len(split.test) == len(split.valid) == 943


def test_amazon_beauty_loads_with_titles_and_whole_category_paths(beauty_dir):
    data = read_recbole(beauty_dir, categories_sep="")
    log, text = data.k_core(5)  # already 5-core: nothing is dropped
    assert (log.n_users, log.n_items, len(log)) == (22_363, 12_101, 198_502)
    assert len(text) == 12_094  # the README: 7 items have no title
    described = [item for item in log.items.decode(range(200)) if item in text]
    assert len(described) >= 190 and all(len(text[item].categories) == 1 for item in described)
