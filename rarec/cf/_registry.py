"""Backbones by name."""

from __future__ import annotations

from typing import Any

from ._base import CFBackbone
from ._bpr import BPR
from ._comirec import ComiRec
from ._precomputed import Precomputed
from ._sasrec import SASRec
from ._training import TrainingConfig

BACKBONES: dict[str, type[CFBackbone]] = {cls.name: cls for cls in (SASRec, ComiRec, BPR, Precomputed)}


def make_backbone(name: str, training: TrainingConfig | None = None, **config: Any) -> CFBackbone:
    """Build a backbone by name (``"sasrec"``, ``"comirec"``, ``"bpr"``, ``"precomputed"``).

    ``config`` holds the fields of the backbone's config dataclass (for
    ``"precomputed"``: ``item_embeddings``, ``user_embeddings`` or ``path``).
    """
    if name not in BACKBONES:
        raise ValueError(f"The 'backbone' parameter must be one of {sorted(BACKBONES)}. Got {name!r} instead.")
    cls = BACKBONES[name]
    if cls is Precomputed:
        return Precomputed(**config, training=training)
    return cls(cls.config_class(**config), training)
