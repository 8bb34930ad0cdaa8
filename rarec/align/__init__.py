"""Stage 2 of RA-Rec: the alignment module, the only part that trains."""

from ._projector import REPARAMETERIZATIONS, PrefixConfig, PrefixProjector, alignment_loss

__all__ = ["REPARAMETERIZATIONS", "PrefixConfig", "PrefixProjector", "alignment_loss"]
