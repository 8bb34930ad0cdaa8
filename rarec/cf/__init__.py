"""Stage 1 of RA-Rec: collaborative-filtering (ID) models and baselines.

Every backbone gives item embeddings ``(n_items, d)`` and user embeddings
``(n, K, d)`` for any history, scores the full catalogue on its own, and
saves to safetensors + JSON.
"""

from ._base import CFBackbone
from ._bpr import BPR, BPRConfig
from ._histories import next_item_positions
from ._comirec import ComiRec, ComiRecConfig
from ._cooccurrence_factors import CooccurrenceFactors
from ._ease import EASE, history_matrix
from ._popularity import PopularityRecommender
from ._precomputed import Precomputed, PrecomputedConfig
from ._registry import BACKBONES, make_backbone
from ._sasrec import SASRec, SASRecConfig
from ._text_factors import TextFactors
from ._training import TrainingConfig

__all__ = [
    "next_item_positions",
    "BACKBONES",
    "BPR",
    "BPRConfig",
    "CFBackbone",
    "ComiRec",
    "ComiRecConfig",
    "CooccurrenceFactors",
    "EASE",
    "PopularityRecommender",
    "Precomputed",
    "PrecomputedConfig",
    "SASRec",
    "SASRecConfig",
    "TextFactors",
    "TrainingConfig",
    "history_matrix",
    "make_backbone",
]
