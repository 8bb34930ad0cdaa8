"""RARecommender's parameters: their checks, and the settings objects of each stage built from them."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import torch

from ._validation import check_float, check_int, check_option
from .align import LOSSES, NEGATIVES, REPARAMETERIZATIONS, AlignmentConfig, LLMSource, PrefixConfig, PromptSettings
from .cf import BACKBONES, CFBackbone
from .llm import check_template

if TYPE_CHECKING:
    from ._estimator import RARecommender

#: ``llm_dtype`` values; None lets :meth:`FrozenLLM.load` choose by device.
LLM_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def validate_params(rec: RARecommender) -> None:
    """Raise ``ValueError`` naming the parameter, what it must be and what it got, for the first invalid one."""
    name = type(rec).__name__
    if not isinstance(rec.backbone, CFBackbone):
        check_option(rec.backbone, "backbone", name, sorted(BACKBONES))
    elif not hasattr(rec.backbone, "module_"):
        raise ValueError(f"The 'backbone' parameter of {name} is a CFBackbone that is not fitted; fit it first, "
                         "or pass its name.")
    if rec.backbone_params is not None and not isinstance(rec.backbone_params, dict):
        raise ValueError(f"The 'backbone_params' parameter of {name} must be a dict or None. "
                         f"Got {rec.backbone_params!r} instead.")
    for param, low in (("cf_epochs", 1), ("n_ctx", 0), ("n_id_tokens", 1), ("rank", 1), ("n_random_negatives", 0),
                       ("n_history_titles", 1), ("max_prompt_tokens", 4), ("max_history", 1), ("epochs", 1),
                       ("batch_size", 2), ("patience", 1), ("k", 1), ("verbose", 0), ("checkpoint_every", 1),
                       ("bank_refresh", 1), ("head_epochs", 0), ("head_hidden", 0),
                       ("head_samples", 0)):
        check_int(getattr(rec, param), param, name, low)
    for param, low in (("max_train_samples", 1), ("head_batch_size", 2)):
        if getattr(rec, param) is not None:
            check_int(getattr(rec, param), param, name, low)
    check_option(rec.reparameterization, "reparameterization", name, REPARAMETERIZATIONS)
    check_option(rec.loss, "loss", name, LOSSES)
    check_option(rec.negatives, "negatives", name, NEGATIVES)
    for flag in ("logq", "history_pooling", "balance_id_blocks", "random_negative_gradients"):
        if not isinstance(getattr(rec, flag), bool):
            raise ValueError(f"The {flag!r} parameter of {name} must be True or False. "
                             f"Got {getattr(rec, flag)!r} instead.")
    check_option(rec.selection, "selection", name, ("tailored", "random"))
    if rec.sample_fraction is not None:
        check_float(rec.sample_fraction, "sample_fraction", name, 0.0, 1.0, low_open=True)
    check_option(rec.use_id, "use_id", name, (True, False))
    check_option(rec.llm_dtype, "llm_dtype", name, tuple(LLM_DTYPES))
    if isinstance(rec.score_fusion, str):
        check_option(rec.score_fusion, "score_fusion", name, ("auto",))
    else:
        check_float(rec.score_fusion, "score_fusion", name, 0.0)
    if rec.prefix_layers != "all":
        check_int(rec.prefix_layers, "prefix_layers", name, 1)
    check_float(rec.lower_cache_mb, "lower_cache_mb", name, 0.0)
    check_float(rec.ranking_memory_mb, "ranking_memory_mb", name, 0.0, low_open=True)
    validate_retrieval_params(rec)
    check_float(rec.align_weight, "align_weight", name, 0.0)
    check_float(rec.temperature, "temperature", name, 0.0, low_open=True)
    check_float(rec.distill, "distill", name, 0.0, 1.0)
    check_float(rec.distill_temperature, "distill_temperature", name, 0.0, low_open=True)
    check_float(rec.cooccurrence_teacher, "cooccurrence_teacher", name, 0.0)
    check_int(rec.cooccurrence_factors, "cooccurrence_factors", name, 0)
    check_float(rec.cooccurrence_l2, "cooccurrence_l2", name, 0.0, low_open=True)
    check_int(rec.text_factors, "text_factors", name, 0)
    check_float(rec.text_factor_weight, "text_factor_weight", name, 0.0)
    check_float(rec.lr, "lr", name, 0.0, low_open=True)
    check_float(rec.head_lr, "head_lr", name, 0.0, low_open=True)
    check_float(rec.weight_decay, "weight_decay", name, 0.0)
    check_float(rec.max_grad_norm, "max_grad_norm", name, 0.0, low_open=True)
    check_template(rec.user_template, "history", "user_template")
    check_template(rec.item_template, "item", "item_template")
    if not rec.use_id and rec.n_ctx == 0:
        raise ValueError(f"{name} with use_id=False and n_ctx=0 has no prefix to train.")
    if rec.checkpoint_dir is not None and not isinstance(rec.checkpoint_dir, str | os.PathLike):
        raise ValueError(f"The 'checkpoint_dir' parameter of {name} must be a path or None. "
                         f"Got {rec.checkpoint_dir!r} instead.")


def validate_retrieval_params(rec: RARecommender) -> None:
    """Checked by fit and again by every ranking call: they may change after fitting (``set_params``)."""
    name = type(rec).__name__
    check_option(rec.retrieval, "retrieval", name, ("exact", "ivf"))
    if rec.ivf_lists is not None:
        check_int(rec.ivf_lists, "ivf_lists", name, 1)
    check_int(rec.ivf_probe, "ivf_probe", name, 1)


def prompt_settings(rec: RARecommender) -> PromptSettings:
    return PromptSettings(rec.user_template, rec.item_template, rec.n_history_titles, rec.max_prompt_tokens,
                          rec.max_history)


def llm_source(rec: RARecommender, device: torch.device, verbose: bool | None = None) -> LLMSource:
    return LLMSource(rec.llm, device, LLM_DTYPES[rec.llm_dtype], bool(rec.verbose) if verbose is None else verbose)


def prefix_config(rec: RARecommender, id_dim: int) -> PrefixConfig:
    """Both towers' prefix shape (the user tower's number of interests is set from the backbone)."""
    return PrefixConfig(id_dim=id_dim, n_id_tokens=rec.n_id_tokens, n_ctx=rec.n_ctx,
                        reparameterization=rec.reparameterization, rank=rec.rank, use_id=rec.use_id,
                        depth=None if rec.prefix_layers == "all" else rec.prefix_layers)


def alignment_config(rec: RARecommender, progress: bool) -> AlignmentConfig:
    return AlignmentConfig(loss=rec.loss, align_weight=rec.align_weight, temperature=rec.temperature,
                           n_random_negatives=rec.n_random_negatives,
                           live_random_negatives=rec.random_negative_gradients, negatives=rec.negatives, logq=rec.logq,
                           bank_refresh=rec.bank_refresh, distill=rec.distill,
                           distill_temperature=rec.distill_temperature,
                           # with factors the co-occurrence signal is in the ID vectors: no separate teacher
                           cooccurrence_teacher=0.0 if rec.cooccurrence_factors else rec.cooccurrence_teacher,
                           epochs=rec.epochs, batch_size=rec.batch_size,
                           lr=rec.lr, weight_decay=rec.weight_decay, max_grad_norm=rec.max_grad_norm,
                           patience=rec.patience, head_epochs=rec.head_epochs, head_lr=rec.head_lr,
                           head_batch_size=rec.head_batch_size,
                           head_hidden=rec.head_hidden, history_pooling=rec.history_pooling,
                           balance_id_blocks=rec.balance_id_blocks,
                           lower_cache_mb=rec.lower_cache_mb, progress=progress)


#: Parameters that do not change what a fit computes (left out of a checkpoint's fingerprint).
NOT_FINGERPRINTED = ("verbose", "device", "checkpoint_dir", "checkpoint_every", "retrieval", "ivf_lists",
                     "ivf_probe")
#: Parameters fingerprinted through the settings they set (the trainer's and the ID factors', which the fingerprint
#: holds whole) rather than by name: they were research settings before they were parameters, so a checkpoint
#: written then, with the same settings, still resumes.
FINGERPRINTED_AS_SETTINGS = ("random_negative_gradients", "cooccurrence_l2", "text_factors", "text_factor_weight",
                             "balance_id_blocks")
#: Trainer settings added after checkpoints were written, with their defaults: the fingerprint names one only when
#: it is set away from its default, so that every earlier checkpoint still resumes.
STAMPED_WHEN_SET = {"borrowed_teacher": False, "balance_id_columns": False}


@dataclasses.dataclass(frozen=True)
class IdFactorSettings:
    """The factor sets appended to the ID vectors, from the estimator's parameters (``cooccurrence_factors``,
    ``cooccurrence_teacher``, ``cooccurrence_l2``, ``text_factors``, ``text_factor_weight``)."""

    cooccurrence_rank: int
    cooccurrence_weight: float
    cooccurrence_l2: float = 200.0
    text_rank: int = 0  # 0: no text factors
    text_weight: float = 0.25


def id_factor_settings(rec: RARecommender) -> IdFactorSettings:
    return IdFactorSettings(rec.cooccurrence_factors, rec.cooccurrence_teacher, rec.cooccurrence_l2, rec.text_factors,
                            rec.text_factor_weight)
