"""Early stopping on a validation score, shared by the CF backbones and the alignment trainer."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


@dataclass
class EarlyStopping:
    """The best validation score so far, the weights that reached it, and the rounds waited since.

    Attributes
    ----------
    patience : int
        Rounds without a better score before :attr:`should_stop` turns true.
    """

    patience: int
    best: float = -1.0
    waited: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    def update(self, score: float, module: torch.nn.Module) -> bool:
        """Record one validation round; keep a copy of ``module``'s weights when ``score`` is a new best."""
        if score > self.best:
            self.best, self.waited = score, 0
            self.best_state = copy.deepcopy(module.state_dict())
            return True
        self.waited += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.best_state is not None and self.waited >= self.patience

    def restore_best(self, module: torch.nn.Module) -> None:
        """Load the best weights into ``module`` (nothing when no round was recorded)."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
