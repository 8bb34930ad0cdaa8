"""The training loop shared by the trainable backbones: minibatches, Adam, early stopping."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .._early_stopping import EarlyStopping
from .._validation import check_float, check_int

logger = logging.getLogger(__name__)


@dataclass
class TrainingConfig:
    """How a backbone is trained.

    Attributes
    ----------
    epochs : int
        Upper bound on passes over the training data; early stopping usually ends sooner.
    batch_size : int
        Training samples per step (what a sample is depends on the backbone).
    lr : float
        Adam learning rate.
    weight_decay : float
        Adam L2 penalty.
    patience : int
        Validation rounds without a better NDCG@10 before training stops;
        the best weights are restored. Needs a validation log.
    eval_every : int
        Epochs between validation rounds.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    random_state : int or None
        Seed for initialisation, sampling and dropout. Same seed, same CPU:
        same embeddings. Global RNG state is restored after training.
    verbose : bool
        Show a progress bar (on stderr).
    """

    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    eval_every: int = 1
    device: str = "auto"
    random_state: int | None = 0
    verbose: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "eval_every"):
            check_int(getattr(self, name), name, "TrainingConfig", 1)
        check_float(self.lr, "lr", "TrainingConfig", 0.0, low_open=True)
        check_float(self.weight_decay, "weight_decay", "TrainingConfig", 0.0)


def train_with_early_stopping(
    module: torch.nn.Module,
    epoch_batches: Callable[[], Iterable[Any]],
    batch_loss: Callable[[Any], torch.Tensor],
    validate: Callable[[], float] | None,
    config: TrainingConfig,
    desc: str,
    batches_per_epoch: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[dict[str, float]]:
    """Train ``module`` in place; return one record per epoch.

    ``validate()`` returns the validation NDCG@10 (higher is better); when it
    is given, the weights of the best round are restored at the end.
    ``batches_per_epoch`` gives the per-batch progress bar its total (and so
    an estimate) from the first epoch on; otherwise it is counted then.
    ``optimizer`` defaults to Adam over every trainable parameter with the
    config's learning rate and weight decay.
    """
    if optimizer is None:
        optimizer = torch.optim.Adam(
            [p for p in module.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
        )
    history: list[dict[str, float]] = []
    stopping, best_epoch = EarlyStopping(config.patience), 0
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not config.verbose, leave=False)
    for epoch in bar:
        module.train()
        start, total, n_batches = time.perf_counter(), 0.0, 0
        for batch in tqdm(epoch_batches(), desc=f"epoch {epoch}", unit="batch", total=batches_per_epoch,
                          disable=not config.verbose, leave=False, mininterval=1.0):
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            n_batches += 1
        batches_per_epoch = n_batches
        record = {"epoch": epoch, "loss": total / max(n_batches, 1), "seconds": time.perf_counter() - start}
        if validate is not None and epoch % config.eval_every == 0:
            module.eval()
            with torch.no_grad():
                score = validate()
            record["valid_ndcg@10"] = score
            if stopping.update(score, module):
                best_epoch = epoch
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}",
                        ndcg10=f"{stopping.best:.4f}" if stopping.best_state is not None else "-")
        if stopping.should_stop:
            logger.info("%s: early stop at epoch %d; best validation NDCG@10 %.4f at epoch %d",
                        desc, epoch, stopping.best, best_epoch)
            break
    stopping.restore_best(module)
    module.eval()
    return history
