"""The steps of ``RARecommender.fit`` besides training: inputs, seed, CF stage, samples, checkpoints, encoding.

Each function reads the estimator's parameters and returns what ``fit``
needs; none of them sets a fitted attribute.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import _params
from ._distributed import Group
from ._fit_checkpoint import FitCheckpointer
from .align import (AlignmentSamples, Towers, all_next_item_samples, select_alignment_samples,
                    select_random_samples)
from .align._cold_items import nearest_other_items
from .align._cooccurrence_teacher import validation_check
from .cf import EASE, CFBackbone, CooccurrenceFactors, TextFactors, TrainingConfig, make_backbone
from .data import InteractionLog, ItemTextTable
from .model_selection import leave_last_out

if TYPE_CHECKING:
    from ._estimator import RARecommender


def choose_seed(rec: RARecommender, resume: bool, group: Group) -> int:
    """``random_state``; else, when resuming, the seed the interrupted fit drew; else a fresh draw."""
    if rec.random_state is not None:
        return rec.random_state
    saved = FitCheckpointer.saved_seed(rec.checkpoint_dir) if resume else None
    if saved is not None:
        return saved
    return group.same_value(int(np.random.SeedSequence().entropy % 2**31))  # ranks share rank 0's draw


def fit_backbone(rec: RARecommender, train: InteractionLog, valid: InteractionLog | None, seed: int,
                 device: torch.device, group: Group, progress: bool) -> CFBackbone:
    if isinstance(rec.backbone, CFBackbone):  # fitted already: the CF stage is skipped
        if rec.backbone.n_items_ != train.n_items:
            raise ValueError(f"the fitted backbone knows {rec.backbone.n_items_} items, but X has "
                             f"{train.n_items}; fit it on the same interactions (same item index).")
        return rec.backbone
    training = TrainingConfig(epochs=rec.cf_epochs, random_state=seed, device=str(device), verbose=progress)
    backbone = make_backbone(rec.backbone, training, **(rec.backbone_params or {}))
    backbone.fit(train, valid)
    if hasattr(backbone, "module_"):  # every rank of a distributed fit aligns the same CF model
        group.broadcast_module(backbone.module_)
    return backbone


def cooccurrence_factors(rec: RARecommender, backbone: CFBackbone, sequences: list[np.ndarray],
                         valid: InteractionLog | None) -> tuple[CooccurrenceFactors | None, dict | None]:
    """EASE's ``rec.cooccurrence_factors`` leading factors (L2 penalty: :func:`_params.id_factor_settings`'s),
    fitted on the training ``sequences`` and scaled to ``rec.cooccurrence_teacher`` x the backbone's score spread,
    and what the validation check found. ``None`` (and no check) when off or the catalogue is too large for EASE;
    ``None`` after a check they lost."""
    settings = _params.id_factor_settings(rec)
    rank, weight, n_items = settings.cooccurrence_rank, settings.cooccurrence_weight, backbone.n_items_
    if rank == 0 or weight <= 0:
        return None, None
    if not EASE.fits(n_items, "cooccurrence_factors", "the ID vectors are the backbone's alone"):
        return None, None
    fitted = CooccurrenceFactors.fit(sequences, n_items, rank, settings.cooccurrence_l2)
    return _scaled_and_checked(rec, backbone, sequences, valid, fitted, weight, None, "factors")


def other_item_neighbours(rec: RARecommender, texts: list, n_items: int, id_dropout: float) -> np.ndarray | None:
    """Each known item's nearest other item by text (:func:`nearest_other_items`), computed once for the two steps
    that read it: the text factors' validation check and the trainer's ``id_dropout``. ``None`` when neither runs."""
    settings = _params.id_factor_settings(rec)
    if id_dropout <= 0 and (settings.text_rank == 0 or settings.text_weight <= 0):
        return None
    return nearest_other_items(texts[:n_items])


def text_factors(rec: RARecommender, backbone: CFBackbone, sequences: list[np.ndarray], valid: InteractionLog | None,
                 texts: list, before: CooccurrenceFactors | None,
                 neighbours: np.ndarray | None = None) -> tuple[TextFactors | None, dict | None]:
    """The known items' TF-IDF factors (:class:`TextFactors`; rank and weight: ``text_factors`` and
    ``text_factor_weight``, off by default) scaled to that weight x the backbone's score spread, and what the
    validation check found. Added to the backbone and the factors ``before`` them, they must improve the
    validation NDCG@10 on average over two rankings: of the validation items as they are, and of the same items
    as if added after fit (the ID vector borrowed from the nearest item by text, as ``add_items`` gives it; the
    text factors their own), since ranking such items is what the words are for. ``None`` (and no check) when off
    or when no item text holds a word; ``None`` after a check they lost. ``neighbours``:
    :func:`other_item_neighbours`, when the caller has it."""
    settings = _params.id_factor_settings(rec)
    if settings.text_rank == 0 or settings.text_weight <= 0:
        return None, None
    try:
        fitted = TextFactors.fit(texts[:backbone.n_items_], settings.text_rank)
    except ValueError:  # no text holds a word the vectorizer keeps
        warnings.warn("text factors: no item text holds a word (was item_text given?); the ID vectors carry no "
                      "text factors.", UserWarning, stacklevel=3)
        return None, None
    return _scaled_and_checked(rec, backbone, sequences, valid, fitted, settings.text_weight, before, "text_factors",
                               neighbours=(nearest_other_items(texts[:backbone.n_items_]) if neighbours is None
                                           else neighbours))


def _scaled_and_checked(rec: RARecommender, backbone: CFBackbone, sequences: list[np.ndarray],
                        valid: InteractionLog | None, fitted, weight: float, before: CooccurrenceFactors | None,
                        name: str, neighbours: np.ndarray | None = None) -> tuple[Any, dict | None]:
    """``fitted`` scaled to ``weight`` x the backbone's score spread, kept if the backbone plus ``before`` (if any)
    ranks the validation items worse without it than with it (always kept without validation items; with
    ``neighbours``, on average over the items as they are and as if added after fit: :func:`validation_check`)."""
    def backbone_alone(histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:  # as the towers read it
        return backbone.score_histories([h[-rec.max_history:] for h in histories], users)

    def backbone_scores(histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        scores = backbone_alone(histories, users)
        return scores if before is None else scores + before.score(histories).to(scores)

    users = np.flatnonzero([len(seq) > 0 for seq in sequences])
    factors = fitted.scaled_to(weight, [sequences[u] for u in users],
                               lambda rows: backbone_alone([sequences[u] for u in users[rows]], users[rows]))
    if valid is None:
        return factors, None
    check = validation_check(sequences, valid.to_csr(), backbone_scores,
                             lambda histories, seen: factors.score(histories), name, neighbours)
    return (factors if check["kept"] else None), {"rank": factors.rank, **check}


def training_samples(rec: RARecommender, sequences: list[np.ndarray], texts: list, rng: np.random.Generator,
                     held_out: bool) -> tuple[AlignmentSamples, dict]:
    try:
        samples = all_next_item_samples(sequences)
    except ValueError:
        if not held_out:
            raise
        raise ValueError("no user has two or more training interactions once each user's last interaction is "
                         "held out for validation (users with a single one keep it for training); alignment "
                         "needs (history, next item) pairs: give users with at least three interactions, or "
                         "pass validation= yourrec.") from None
    report = {"candidates": len(samples)}
    if rec.sample_fraction is not None:
        samples, report = select_alignment_samples(samples, sequences, texts, rec.sample_fraction, rng,
                                                   selection=rec.selection)
    if len(samples) == 0:
        raise ValueError(f"the sample selection left no training samples ({report}); use selection='random' "
                         "or a larger sample_fraction.")
    return select_random_samples(samples, rec.max_train_samples, rng), report


def head_samples(rec: RARecommender, sequences: list[np.ndarray], chosen: AlignmentSamples,
                 rng: np.random.Generator) -> AlignmentSamples | None:
    """``rec.head_samples`` more samples for the output heads, uniform among those the prefixes do not train on
    (all of them when fewer are left); ``None`` when none are asked for."""
    if rec.head_samples == 0 or rec.head_epochs == 0:
        return None
    every = all_next_item_samples(sequences)
    stride = max(len(seq) for seq in sequences) + 1
    free = ~np.isin(every.users * stride + every.ends, chosen.users * stride + chosen.ends)
    rest = every.subset(np.flatnonzero(free))
    return select_random_samples(rest, rec.head_samples, rng)


def make_checkpointer(rec: RARecommender, seed: int, log: InteractionLog, group: Group) -> FitCheckpointer | None:
    if rec.checkpoint_dir is None:
        return None
    params = {k: v for k, v in rec.get_params(deep=False).items()
              if k not in _params.NOT_FINGERPRINTED + _params.FINGERPRINTED_AS_SETTINGS}
    # the settings the trainer and the ID factors are given, so that one changed beside the parameters (the
    # benchmarks' research settings) is fingerprinted too
    alignment = {key: value for key, value in dataclasses.asdict(_params.alignment_config(rec, progress=False)).items()
                 if key not in _params.STAMPED_WHEN_SET or value != _params.STAMPED_WHEN_SET[key]}
    params["derived"] = {"alignment": alignment,
                         "id_factors": dataclasses.asdict(_params.id_factor_settings(rec))}
    prefix = _params.prefix_config(rec, 1)  # research settings named only when set, so earlier stamps still hold
    if prefix.pooling != "last":
        params["derived"]["pooling"] = prefix.pooling
    if prefix.id_blocks is not None:
        params["derived"]["id_blocks"] = list(prefix.id_blocks)
    return FitCheckpointer(rec.checkpoint_dir, FitCheckpointer.stamp_of(params, seed, log),
                           rec.checkpoint_every, writer=group.is_main, seed=seed)


def encode_catalogue(towers: Towers, checkpointer: FitCheckpointer | None, group: Group,
                      progress: bool) -> torch.Tensor:
    """Every item's vector; resumable with a checkpointer (``checkpoint_every`` encoding batches apart)."""
    if checkpointer is None or group.active:
        return group.sharded(lambda part: towers.encode_items(part, progress), towers.n_items)
    lengths = np.array([len(t) for t in towers.item_tokens])
    return checkpointer.encode_catalogue(lambda part: towers.encode_items(part, progress), lengths,
                                         towers.hidden_size, towers.encode_batch)


def item_texts(item_text: Any, log: InteractionLog) -> list:
    if item_text is None:
        warnings.warn("no item_text given: every item prompt is a placeholder, so the LLM sees no titles.",
                      stacklevel=3)
        return [None] * log.n_items
    table = ItemTextTable.from_any(item_text)
    if len(table) == 0:
        raise ValueError("item_text holds no titles; pass titles by item id, or item_text=None to run without text.")
    return table.align(log.items, on_unknown="raise")


def train_valid(log: InteractionLog, validation: Any) -> tuple[InteractionLog, InteractionLog | None]:
    if validation is None:
        split = leave_last_out(log, n_test=1, n_valid=0)
        return split.train, (split.test if len(split.test) else None)
    try:
        return log, InteractionLog.from_any(validation, user_index=log.users, item_index=log.items)
    except KeyError as exc:
        raise KeyError(f"validation names an id that X does not: {exc.args[0]}") from None
