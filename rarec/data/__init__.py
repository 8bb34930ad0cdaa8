"""Interaction data: the log, item texts, loaders, filters and a synthetic catalogue."""

from ._amazon import read_amazon, read_amazon_meta
from ._csv import read_csv, read_item_text_csv
from ._dataset import Dataset, k_core_filter
from ._filters import KCoreFilter
from ._ids import IdIndex
from ._interactions import InteractionLog
from ._item_text import ItemText, ItemTextTable
from ._load import load_dataset
from ._movielens import read_movielens
from ._recbole import read_recbole
from ._synthetic import make_interactions

__all__ = [
    "Dataset",
    "IdIndex",
    "KCoreFilter",
    "InteractionLog",
    "ItemText",
    "ItemTextTable",
    "k_core_filter",
    "load_dataset",
    "make_interactions",
    "read_amazon",
    "read_amazon_meta",
    "read_csv",
    "read_item_text_csv",
    "read_movielens",
    "read_recbole",
]
