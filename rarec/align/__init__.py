"""Stage 2 of RA-Rec: the alignment module, the only part that trains."""

from ._projector import REPARAMETERIZATIONS, PrefixConfig, PrefixProjector, alignment_loss
from ._samples import AlignmentSamples, all_next_item_samples, select_random_samples
from ._selection import select_alignment_samples
from ._towers import LLMSource, PromptSettings, Towers
from ._trainer import (LOSSES, NEGATIVES, AlignmentConfig, AlignmentResult, distillation_loss, length_bucketed_batches,
                       train_alignment)
from ._two_tower import TwoTowerAligner

__all__ = [
    "LOSSES",
    "NEGATIVES",
    "REPARAMETERIZATIONS",
    "AlignmentConfig",
    "AlignmentResult",
    "AlignmentSamples",
    "LLMSource",
    "PromptSettings",
    "Towers",
    "TwoTowerAligner",
    "length_bucketed_batches",
    "select_random_samples",
    "train_alignment",
    "PrefixConfig",
    "PrefixProjector",
    "alignment_loss",
    "distillation_loss",
    "all_next_item_samples",
    "select_alignment_samples",
]
