"""Stage 2 of RA-Rec: the alignment module, the only part that trains."""

from ._projector import REPARAMETERIZATIONS, PrefixConfig, PrefixProjector, alignment_loss
from ._samples import AlignmentSamples, all_next_item_samples
from ._selection import select_alignment_samples

__all__ = [
    "REPARAMETERIZATIONS",
    "AlignmentSamples",
    "PrefixConfig",
    "PrefixProjector",
    "alignment_loss",
    "all_next_item_samples",
    "select_alignment_samples",
]
