"""The alignment trainer: batches, losses, the lower-layer cache, NaN guards, the distributed step,
validation and early stopping. Only the alignment module's weights change."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .._distributed import Group, run_step
from .._early_stopping import EarlyStopping
from ._cold_items import borrowed_embeddings, nearest_other_items
from ._cooccurrence_teacher import cooccurrence_teacher
from ._projector import alignment_loss, balanced_block_scales
from ._samples import AlignmentSamples
from ._towers import Towers, length_sorted_batches, pick
from ._training_state import TrainingState, optimizer_state, restore_optimizer
from ._two_tower import OutputHeads

logger = logging.getLogger(__name__)
LOSSES = ("bpr", "softmax")
NEGATIVES = ("in_batch", "catalogue")


@dataclasses.dataclass
class AlignmentConfig:
    """How the alignment module is trained (the estimator's parameters of the same names)."""

    loss: str = "softmax"  # ranking loss over the batch's items: "softmax" or "bpr"
    align_weight: float = 0.1  # weight of the InfoNCE alignment loss (0 disables it)
    temperature: float = 0.1  # of the alignment loss
    n_random_negatives: int = 64  # uniformly drawn extra items per batch (in_batch)
    #: "in_batch": the batch's target items (plus random extras) are the candidates, with the logQ correction
    #: when ``logq``; "catalogue": a softmax over every item, the batch's items live and the rest from a bank of
    #: item vectors (no gradient) re-encoded every ``bank_refresh`` steps.
    negatives: str = "in_batch"
    logq: bool = True  # subtract log(expected draws) of each in-batch candidate from its logit
    bank_refresh: int = 50
    #: weight of the backbone's own ranking in the ranking loss: ``(1 - distill) * CE(target) + distill *
    #: CE(softmax(CF scores / distill_temperature))`` over the same candidates (0: the next item alone)
    distill: float = 0.9
    distill_temperature: float = 1.0
    #: weight of EASE's item co-occurrence score (the sample's whole history) added to the backbone's logits in the
    #: teacher, in units of the backbone's score spread (0: the backbone alone)
    cooccurrence_teacher: float = 0.25
    epochs: int = 1
    batch_size: int = 16  # samples per rank and step
    lr: float = 1e-2
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    patience: int = 2  # epochs without a better validation score before stopping
    #: epochs of the output heads, trained after the prefixes on their fixed vectors (0: no heads)
    head_epochs: int = 30
    head_lr: float = 1e-4  # Adam, decayed to 0 along a cosine over the heads' steps
    head_batch_size: int | None = None  # samples per rank and head step (None: batch_size)
    head_hidden: int = 1024  # hidden units of a residual MLP after each linear head (0: linear heads)
    #: the user head also reads the mean of the LLM's item vectors (before the heads) over the whole history
    history_pooling: bool = True
    #: share of the batch's items whose ID prefix is, at each step, their text neighbour's CF embedding (what an
    #: item added after fit gets), so the towers learn to read an item's text when its ID is borrowed. A research
    #: setting for the benchmarks, not an estimator parameter: 0.25 lifted the cold-item row a little (session 56),
    #: 0.5 lowered ML-100K's warm validation and 0.25 is unmeasured there (docs/benchmarks.md, cold items)
    id_dropout: float = 0.0
    #: with ``id_dropout``, the teacher scores an item whose ID is borrowed as an added item's ID vector is scored
    #: (its text neighbour's CF part and co-occurrence score, its own text factors) rather than by its own, and the
    #: output heads see the same share of borrowed items (the catalogue encoded once more with them): the student
    #: learns the level its teacher gives added items, not only their order. A research setting: on the cold-item
    #: row it lowered HR@100 (0.1869 against 0.1905, one seed) and left the level where it was (session 58)
    borrowed_teacher: bool = False
    #: the random extra negatives (``in_batch``) are encoded with gradients; False encodes the extras that are not
    #: also a target of the batch forward-only, so that they move the users' vectors but not the item tower, and a
    #: step skips most of its backward pass (they hold most of a step's tokens): ``random_negative_gradients``
    live_random_negatives: bool = True
    #: each tower's projector scales the blocks of its ID vectors (the backbone's embedding, the co-occurrence
    #: factors, the text factors) to equal shares of their variance over its training inputs, the total unchanged
    #: (:func:`~rarec.align._projector.balanced_block_scales`); the teacher's scores are untouched
    #: (``balance_id_blocks``)
    balance_id_blocks: bool = False
    #: as ``balance_id_blocks``, and inside each block every column gets the same share of the block's variance too
    #: (``balanced_block_scales(columns=True)``): the text factors' trailing directions, whose variance falls with
    #: their singular values, learn as fast as the leading ones. A research setting: on the cold-item row it lowered
    #: HR@100 (0.1852 against 0.1905, one seed; session 60)
    balance_id_columns: bool = False
    lower_cache_mb: float = 2048  # budget for cached lower-layer states (items first, then samples)
    progress: bool = False


@dataclasses.dataclass
class AlignmentResult:
    """What training gives besides the trained weights (left in ``towers.aligner``)."""

    log: list[dict]  # one record per epoch
    best_fusion: float | None  # the score-fusion weight of the best validation round (None: no validation)


class Checkpointer(Protocol):
    """Where the trainer saves and finds its state; the trainer never touches files itself."""

    every: int  # training steps between checkpoints

    def read_training(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None: ...

    def write_training(self, name: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...

    def read_heads(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None: ...

    def write_heads(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...

    def read_head_epochs(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None: ...

    def write_head_epochs(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None: ...


def train_alignment(towers: Towers, samples: AlignmentSamples, sequences: Sequence[np.ndarray],
                    config: AlignmentConfig, rng: np.random.Generator, group: Group | None = None,
                    validate: Callable[[], dict[float, float]] | None = None,
                    checkpointer: Checkpointer | None = None,
                    extra_teacher: Callable[[np.ndarray, np.ndarray | None], torch.Tensor] | None = None,
                    head_samples: AlignmentSamples | None = None,
                    held_out: sp.csr_matrix | None = None,
                    neighbours: np.ndarray | None = None) -> AlignmentResult:
    """Train ``towers.aligner`` on (history, next item) samples; keep the weights of the best validation round.

    Parameters
    ----------
    towers : Towers
    samples : AlignmentSamples
    sequences : list of int arrays
        Training sequences by user (the histories of the samples).
    config : AlignmentConfig
    rng : numpy Generator
        Batches and random negatives.
    group : Group, optional
        The ranks of a data-parallel fit (one process when absent).
    validate : callable, optional
        ``validate()`` -> ``{fusion weight: validation NDCG@10}`` with the
        aligner in eval mode; the best value drives early stopping.
    checkpointer : Checkpointer, optional
        Resumes from its latest state and saves every ``checkpointer.every`` steps and every epoch.
    extra_teacher : callable, optional
        ``extra_teacher(rows, candidates)`` -> logits (B, M) added to the backbone's (after
        ``distill_temperature``, before logQ) when ``distill > 0``: a teacher that knows more than the
        backbone, e.g. a text score. ``rows`` are the batch's indices into ``samples``; ``candidates`` the
        candidate items, or ``None`` for the whole catalogue. A research hook for benchmarks, not an
        estimator parameter.
    head_samples : AlignmentSamples, optional
        More samples for the output heads' stage only, beside ``samples``
        (their users are encoded once, with no gradient, after the prefixes
        are trained).
    held_out : scipy.sparse matrix (n_users, n_items), optional
        The validation items by user (not in ``sequences``). With them the
        co-occurrence teacher is used only if it ranks them better than the
        backbone alone; the first epoch's record says what it found.
    neighbours : int array (n_items,), optional
        Each item's nearest other item by text (:func:`~rarec.align._cold_items.nearest_other_items`), which
        ``id_dropout`` borrows ID vectors from; computed here when absent and needed.
    """
    if head_samples is not None and len(head_samples) and extra_teacher is not None:
        raise ValueError("extra_teacher scores the rows of samples; it cannot be combined with head_samples.")
    group = group or Group()
    llm, aligner = towers.llm, towers.aligner
    device = llm.device
    user_cf, user_tokens = _user_inputs(towers, samples, sequences)  # (S, K, d): the CF stage is frozen
    item_tokens, item_cf = towers.item_tokens, towers.item_cf
    setup_start = time.perf_counter()
    align = config.align_weight > 0 and aligner.user_prefix.config.use_id
    start = aligner.start(llm)  # layers below it see no prefix
    budget = config.lower_cache_mb * 2**20 if start > 0 else 0
    towers.item_states, item_text_kv, budget = _prepare_prompts(towers, "item", item_tokens, start, budget, align,
                                                                config.progress)
    user_states, user_text_kv, _ = _prepare_prompts(towers, "user", user_tokens, start, budget, align,
                                                    config.progress)
    setup_seconds = time.perf_counter() - setup_start  # text keys/values and lower-layer states, once per fit
    balanced = config.balance_id_blocks or config.balance_id_columns
    if balanced and aligner.user_prefix.config.use_id:  # a resumed fit reloads the same scales
        widths = towers.id_block_widths()
        for projector, vectors in ((aligner.user_prefix, user_cf), (aligner.item_prefix, item_cf)):
            projector.input_scale.copy_(balanced_block_scales(vectors, widths, columns=config.balance_id_columns))
    optimizer = torch.optim.AdamW(aligner.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scale = llm.spec.hidden_size ** -0.5  # a fixed temperature for final-norm dot products
    catalogue = config.negatives == "catalogue"
    log_q = _log_q(samples.targets, towers.n_items, config, group, device)
    teacher_items = item_cf[:, 0].to(device).float() if config.distill > 0 else None  # (n_items, d), moved once
    every_sample = _joined(samples, head_samples)
    extra_teacher, teacher_check = _with_cooccurrence(extra_teacher, towers, sequences, every_sample, len(samples),
                                                      config, held_out)
    borrowed, teach_borrowed = None, False
    if config.id_dropout > 0:  # as add_items builds an added item's: the neighbour's CF part, its own text factors
        if neighbours is None:
            neighbours = nearest_other_items(towers.texts[:towers.n_items])
        own = 0 if towers.text_factors is None else towers.text_factors.rank
        borrowed = item_cf.clone()
        borrowed[:, 0, :item_cf.shape[2] - own] = borrowed_embeddings(item_cf[:, 0, :item_cf.shape[2] - own],
                                                                      towers.texts, neighbours)
        teach_borrowed = config.borrowed_teacher and teacher_items is not None
        if teach_borrowed:  # rows n_items on: the borrowed ID vectors
            teacher_items = torch.cat([teacher_items, borrowed[:, 0].to(device).float()])
    saved = checkpointer.read_training() if checkpointer is not None else None
    if saved is not None:
        run = TrainingState.from_checkpoint(*saved, aligner, optimizer, rng, config.patience)
        logger.info("resuming alignment training at epoch %d, step %d", run.epoch, run.step)
    else:
        run = TrainingState(EarlyStopping(config.patience))
    if run.bank is not None:  # resumed: the bank as the interrupted fit had it, kept on the device
        run.bank = run.bank.to(device)

    def save(epoch_done: bool) -> None:
        if checkpointer is not None and group.is_main:  # one writer; every rank holds the same state
            meta, tensors = run.to_checkpoint(aligner, optimizer, rng)
            checkpointer.write_training(f"step-{run.global_step:08d}" + ("-epoch" if epoch_done else ""), meta,
                                        tensors)

    wrapped = group.wrap(aligner)  # DistributedDataParallel when several ranks train together
    for epoch in range(run.epoch, config.epochs + 1):
        if run.done:
            break
        run.epoch = epoch
        aligner.train()
        if run.batches is None:  # a new epoch (else: resumed in the middle of one)
            # global batches: batch_size samples per rank, the same on every rank (same seed)
            run.batches = length_bucketed_batches([len(t) for t in user_tokens], config.batch_size * group.size, rng)
            run.total, run.step, run.seconds = 0.0, 0, 0.0
        t0 = time.perf_counter() - run.seconds
        bar = tqdm(run.batches[run.step:], desc=f"alignment epoch {epoch}/{config.epochs}", unit="batch",
                   initial=run.step, total=len(run.batches), disable=not config.progress, leave=False)
        for rows in bar:
            if len(rows) < group.size:  # a last global batch too small to give every rank a user: skipped
                run.step += 1
                continue
            extra = rng.integers(0, towers.n_items, 0 if catalogue else config.n_random_negatives)
            # unique: an item drawn twice (two users' target, or a target drawn again at random) is one candidate
            items, positive = np.unique(np.concatenate([samples.targets[rows], extra]), return_inverse=True)
            vectors = _catalogue_bank(run, towers, group, config.bank_refresh, device) if catalogue else None
            batch_cf = item_cf[items]  # (M, 1, d): the items' ID embeddings, some borrowed with id_dropout
            teacher_of = None
            if borrowed is not None:
                drop = rng.random(len(items)) < config.id_dropout
                batch_cf = torch.where(torch.as_tensor(drop)[:, None, None], borrowed[items], batch_cf)
                if teach_borrowed:
                    teacher_of = _borrowed_teacher_of(None if catalogue else items, items[drop], neighbours,
                                                      towers.n_items)
            mine = group.shard(np.arange(len(rows)))  # this rank's users of the global batch (all of them alone)
            its = group.shard(np.arange(len(items))) if len(items) >= group.size else np.zeros(1, dtype=int)

            def step(module, rows=rows, items=items, positive=positive, mine=mine, its=its, vectors=vectors,
                     batch_cf=batch_cf, teacher_of=teacher_of):
                users = rows[mine]
                h_u = module.encode(llm, "user", user_cf[users].to(device), [user_tokens[r] for r in users],
                                    pick(user_states, users))
                part = items[its]
                live = None if config.live_random_negatives else np.isin(part, samples.targets[rows])
                h_i = _encode_candidates(module, llm, batch_cf[its].to(device), [item_tokens[i] for i in part],
                                         pick(towers.item_states, part), live)
                h_i = group.gather_rows(h_i.float(), len(items))  # every item of the global batch
                if vectors is not None:  # the whole catalogue: the batch's items live, the others from the bank
                    h_i = vectors.index_copy(0, torch.as_tensor(items, device=device), h_i)  # (N, hidden)
                    target = torch.as_tensor(items[positive[mine]], device=device)
                else:
                    target = torch.as_tensor(positive[mine], device=device)
                scores = (h_u.float() @ h_i.T) * scale  # (local B, M)
                loss = _objective(scores, target, users, None if vectors is not None else items, user_cf,
                                  teacher_items, log_q, config, extra_teacher, teacher_of)
                if align:  # cheap: every rank computes it for the whole global batch
                    loss = loss + config.align_weight * (
                        alignment_loss(module.user_prefix.id_prefix(user_cf[rows].to(device)),
                                       user_text_kv[rows].to(device), config.temperature)
                        + alignment_loss(module.item_prefix.id_prefix(item_cf[items].to(device)),
                                         item_text_kv[items].to(device), config.temperature))
                return loss

            loss = run_step(wrapped, step, aligner)
            _optimizer_step(aligner, optimizer, loss, config, epoch, run.step + 1)
            run.total += float(loss.detach())
            run.step += 1
            run.global_step += 1
            bar.set_postfix(loss=f"{run.total / run.step:.4f}")
            if checkpointer is not None and run.global_step % checkpointer.every == 0:
                run.seconds = time.perf_counter() - t0
                save(epoch_done=False)
        record = {"epoch": epoch, "loss": group.mean(run.total / max(run.step, 1)),
                  "seconds": time.perf_counter() - t0, "samples": len(samples)}
        if epoch == 1:
            record["setup_seconds"] = setup_seconds
            if teacher_check is not None:
                record["cooccurrence_teacher"] = teacher_check
        if validate is not None:
            aligner.eval()
            by_weight = validate()
            weight = max(by_weight, key=by_weight.get)
            record["valid_ndcg@10"] = by_weight[weight]
            if len(by_weight) > 1:
                record["valid_ndcg@10_by_fusion_weight"] = by_weight
            if run.stopping.update(by_weight[weight], aligner):
                run.best_fusion = weight
        run.log.append(record)
        logger.info("alignment epoch %d: %s", epoch, record)
        run.batches = None  # the next epoch draws its own
        run.done = epoch == config.epochs or run.stopping.should_stop
        run.epoch = epoch + 1
        save(epoch_done=True)
    run.stopping.restore_best(aligner)
    aligner.eval()
    saved_heads = checkpointer.read_heads() if checkpointer is not None and config.head_epochs > 0 else None
    if saved_heads is not None:  # resumed after the heads' stage: their weights, record and the rng as it left them
        record, run.best_fusion = _restore_heads(towers, *saved_heads, rng)
        run.log.append(record)
        logger.info("output heads (from the checkpoint): %s", record)
    elif config.head_epochs > 0:
        if head_samples is not None and len(head_samples):
            more_cf, more_tokens = _user_inputs(towers, head_samples, sequences)
            samples = every_sample
            user_cf, user_tokens = torch.cat([user_cf, more_cf]), user_tokens + more_tokens
        # the heads' in-batch candidates are drawn per head batch, which may differ from the prefixes'
        log_q = _log_q(samples.targets, towers.n_items, config, group, device, heads=True)
        record = _train_heads(towers, samples, sequences, user_cf, user_tokens, user_states, teacher_items, log_q,
                              config, rng, group, extra_teacher, checkpointer=checkpointer,
                              borrowed=(borrowed, neighbours) if teach_borrowed else None)
        if validate is not None:  # kept only if they rank the validation items better than the prefixes alone
            by_weight = validate()
            weight = max(by_weight, key=by_weight.get)
            record["valid_ndcg@10"] = by_weight[weight]
            record["kept"] = by_weight[weight] > run.stopping.best
            if record["kept"]:
                run.best_fusion = weight
            else:
                aligner.heads, towers.item_basis = None, None
        run.log.append(record)
        logger.info("output heads: %s", record)
        if checkpointer is not None:  # only the writing rank writes
            checkpointer.write_heads(*_heads_checkpoint(towers, record, run.best_fusion, rng))
    return AlignmentResult(run.log, run.best_fusion if run.stopping.best_state is not None else None)


def _heads_checkpoint(towers: Towers, record: dict, best_fusion: float | None,
                      rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """What the heads' stage leaves, as (meta, tensors): its record, the fusion weight, the rng's state, the
    catalogue's outputs before the heads (also the pooling basis, when the user head pools), and the heads'
    weights when they were kept."""
    heads = towers.aligner.heads
    meta = {"record": record, "best_fusion": best_fusion, "numpy_rng": rng.bit_generator.state,
            "heads": None if heads is None else {"hidden": heads.hidden, "pool": heads.pools},
            "pooled": towers.item_basis is not None}  # the pooling basis is the outputs before the heads
    tensors = {"item_outputs": towers.item_outputs}  # write_checkpoint makes every tensor a contiguous CPU copy
    if heads is not None:
        tensors.update({f"heads.{k}": v for k, v in heads.state_dict().items()})
    return meta, tensors


def _restore_heads(towers: Towers, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                   rng: np.random.Generator) -> tuple[dict, float | None]:
    """Put back what :func:`_heads_checkpoint` saved: as if the heads' stage had just run. Returns its record
    and the fusion weight."""
    towers.item_outputs = tensors["item_outputs"]
    towers.item_basis = towers.item_outputs if meta["pooled"] else None
    heads = None
    if meta["heads"] is not None:
        heads = OutputHeads(towers.item_outputs.shape[1], meta["heads"]["hidden"], pool=meta["heads"]["pool"])
        heads.load_state_dict({k.removeprefix("heads."): v for k, v in tensors.items() if k.startswith("heads.")})
        heads = heads.to(towers.llm.device).eval()
    towers.aligner.heads = heads
    rng.bit_generator.state = meta["numpy_rng"]
    return meta["record"], meta["best_fusion"]


def _encode_candidates(module: torch.nn.Module, llm, cf: torch.Tensor, tokens: list[list[int]],
                       states: list[torch.Tensor] | None, live: np.ndarray | None) -> torch.Tensor:
    """The candidate items' vectors (M, hidden), in the order given; those not ``live`` (a boolean mask; None: all
    live) are encoded without gradients, so that the backward pass skips them."""
    if live is None or live.all():
        return module.encode(llm, "item", cf, tokens, states)
    live_rows, other_rows = np.flatnonzero(live), np.flatnonzero(~live)
    parts = []
    for rows, grad in ((live_rows, True), (other_rows, False)):
        if len(rows):
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                parts.append(module.encode(llm, "item", cf[torch.as_tensor(rows)], [tokens[r] for r in rows],
                                           pick(states, rows)).float())
    back = np.argsort(np.concatenate([live_rows, other_rows]))  # from live-first order to the order given
    return torch.cat(parts)[torch.as_tensor(back, device=parts[0].device)]


def _joined(samples: AlignmentSamples, more: AlignmentSamples | None) -> AlignmentSamples:
    """``samples`` followed by ``more`` (the output heads' extra samples), or ``samples`` alone."""
    if more is None or not len(more):
        return samples
    return AlignmentSamples(*(np.concatenate([a, b]) for a, b in zip(
        (samples.users, samples.ends, samples.targets), (more.users, more.ends, more.targets))))


def _with_cooccurrence(extra_teacher: Callable | None, towers: Towers, sequences: Sequence[np.ndarray],
                       samples: AlignmentSamples, n_prefix_samples: int, config: AlignmentConfig,
                       held_out: sp.csr_matrix | None) -> tuple[Callable | None, dict | None]:
    """``extra_teacher`` plus the co-occurrence teacher when ``config.cooccurrence_teacher`` > 0 (and distilling),
    and what its validation check found (``None`` when there was none). Rows index ``samples`` (the prefixes'
    ``n_prefix_samples``, then the heads' extra ones; the scale is set on the prefixes' alone, so that they train
    the same whatever the heads get). With ``held_out`` items the teacher is added only if it ranks them better
    than the backbone alone."""
    if config.cooccurrence_teacher <= 0 or config.distill <= 0:
        return extra_teacher, None

    def backbone(histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:  # catalogue scores, on the CPU
        return _teacher_scores(towers.user_cf(histories, users), towers.item_cf[:, 0].float(), None)

    def of_samples(rows: np.ndarray) -> torch.Tensor:
        return backbone([sequences[u][:e] for u, e in zip(samples.users[rows], samples.ends[rows])],
                        samples.users[rows])

    added = cooccurrence_teacher(config.cooccurrence_teacher, sequences, samples, of_samples, towers.n_items,
                                 scale_from=n_prefix_samples)
    check = None if added is None or held_out is None else added.validation_check(sequences, held_out, backbone)
    if check is not None and not check["kept"]:
        added = None
    if added is None or extra_teacher is None:
        return added or extra_teacher, check
    return (lambda rows, candidates: added(rows, candidates) + extra_teacher(rows, candidates).to(torch.float32),
            check)


def _user_inputs(towers: Towers, samples: AlignmentSamples, sequences: Sequence[np.ndarray],
                 ) -> tuple[torch.Tensor, list[list[int]]]:
    """The CF vectors (S, K, d) and prompt tokens (of the window) of each sample's history."""
    histories = [sequences[u][:e] for u, e in zip(samples.users, samples.ends)]
    return (towers.user_cf(histories, samples.users),
            [towers.prompts.user_tokens(towers.window(h)) for h in histories])


def _log_q(targets: np.ndarray, n_items: int, config: AlignmentConfig, group: Group, device,
           heads: bool = False) -> torch.Tensor:
    """log of how often each item is drawn as an in-batch candidate per batch (the prefixes' batch, or with
    ``heads`` the heads' batch): targets by their frequency among the samples, random extras uniformly; a
    candidate's logit minus it gives an unbiased softmax estimate."""
    draws = (_batch_size(config, heads) * group.size * np.bincount(targets, minlength=n_items) / len(targets)
             + config.n_random_negatives / n_items)
    return torch.as_tensor(np.log(np.maximum(draws, 1e-12)), dtype=torch.float32, device=device)


def _batch_size(config: AlignmentConfig, heads: bool = False) -> int:
    """Samples per rank and step: the prefixes', or with ``heads`` the output heads' (the prefixes' unless set)."""
    return config.head_batch_size if heads and config.head_batch_size is not None else config.batch_size


def _objective(scores: torch.Tensor, target: torch.Tensor, rows: np.ndarray, items: np.ndarray | None,
               user_cf: torch.Tensor, teacher_items: torch.Tensor | None, log_q: torch.Tensor,
               config: AlignmentConfig, extra_teacher: Callable | None,
               teacher_of: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """The ranking loss of scores (B, M) for samples ``rows`` against candidates ``items`` (``None``: the whole
    catalogue), logQ-corrected for sampled candidates, mixed with the backbone's ranking when distilling.
    ``teacher_of``: the candidates' rows of ``teacher_items`` and columns of ``extra_teacher``, where they are not
    the candidates themselves (:func:`_borrowed_teacher_of`)."""
    device = scores.device
    candidates = None if items is None else torch.as_tensor(items, device=device)
    correct = config.logq and candidates is not None
    if correct:
        scores = scores - log_q[candidates]
    loss = ranking_loss(scores, target, config.loss)
    if config.distill <= 0:
        return loss
    vector_rows, columns = (candidates, items) if teacher_of is None else (
        torch.as_tensor(teacher_of[0], device=device), teacher_of[1])
    teacher = _teacher_scores(user_cf[rows].to(device), teacher_items, vector_rows) / config.distill_temperature
    if extra_teacher is not None:
        teacher = teacher + extra_teacher(rows, columns).to(teacher)
    if correct:
        teacher = teacher - log_q[candidates]  # the same sampled candidates, the same correction
    return (1 - config.distill) * loss + config.distill * distillation_loss(scores, teacher, 1.0)


def _borrowed_teacher_of(candidates: np.ndarray | None, dropped: np.ndarray, neighbours: np.ndarray,
                         n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the teacher finds each candidate (every item when ``None``) when the ``dropped`` ones are scored as
    added items: its row of the teacher's table (the item's own ID vector, or for a dropped item its borrowed one,
    ``n_items`` rows further) and its column of the extra teacher (a dropped item's text neighbour's, when it has
    one: an added item has no co-occurrence of its own)."""
    columns = np.arange(n_items) if candidates is None else np.asarray(candidates)
    is_dropped = np.isin(columns, dropped)
    extra = np.where(is_dropped & (neighbours[columns] >= 0), neighbours[columns], columns)
    return columns + n_items * is_dropped, extra


def _train_heads(towers: Towers, samples: AlignmentSamples, sequences: Sequence[np.ndarray], user_cf: torch.Tensor,
                 user_tokens: list[list[int]], user_states: list[torch.Tensor] | None,
                 teacher_items: torch.Tensor | None, log_q: torch.Tensor, config: AlignmentConfig,
                 rng: np.random.Generator, group: Group, extra_teacher: Callable | None,
                 checkpointer: Checkpointer | None = None,
                 borrowed: tuple[torch.Tensor, np.ndarray] | None = None) -> dict:
    """Train output heads (identity at the start) on the vectors the trained prefixes give; leaves them in
    ``towers.aligner.heads`` and returns the stage's record (its ``seconds`` count this run's part only when a
    ``checkpointer`` resumed it part-way).

    ``borrowed`` (``borrowed_teacher``): every item's borrowed ID vectors (n_items, 1, d) and text neighbours; the
    catalogue is then also encoded with them, and ``id_dropout`` of each step's candidates are scored from those
    vectors, by the teacher as added items.

    The samples' users and the catalogue are encoded once
    (:func:`_head_inputs`), so a step runs no LLM and costs a few small
    matrix products: many epochs are affordable (:func:`_fit_heads`).
    """
    started = time.perf_counter()
    users, items, pooled = _head_inputs(towers, samples, sequences, user_cf, user_tokens, user_states, config, group)
    dropped = None
    if borrowed is not None:  # the catalogue's vectors (before any head) with borrowed ID vectors
        vectors, neighbours = borrowed

        def encode(part: np.ndarray) -> torch.Tensor:
            return towers.encode("item", vectors[part], [towers.item_tokens[i] for i in part],
                                 pick(towers.item_states, part))

        with torch.no_grad():
            dropped = (group.sharded(encode, towers.n_items).to(items.device), neighbours)
    heads, loss = _fit_heads(users, items, pooled, samples, user_cf, teacher_items, log_q, config, rng, group,
                             extra_teacher, checkpointer, dropped)
    towers.aligner.heads = heads
    return {"stage": "output_heads", "epochs": config.head_epochs, "loss": loss,
            "seconds": time.perf_counter() - started, "samples": len(samples)}


def _head_inputs(towers: Towers, samples: AlignmentSamples, sequences: Sequence[np.ndarray], user_cf: torch.Tensor,
                 user_tokens: list[list[int]], user_states: list[torch.Tensor] | None, config: AlignmentConfig,
                 group: Group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The output heads' fixed inputs, on the LLM's device: the samples' user vectors and the catalogue's, before
    any head, and (with ``history_pooling``) each sample's mean item vector over its whole history.

    Drops any heads the aligner had; the catalogue's outputs become
    ``towers.item_outputs`` (the prefixes are final, so later catalogue
    encodings only apply the heads) and, with ``history_pooling``, the
    pooling basis ``towers.item_basis``.
    """
    aligner, device = towers.aligner, towers.llm.device
    aligner.heads = None
    # the prefixes' samples (with their cached lower-layer states when there are any), then any head_samples
    cached = 0 if user_states is None else len(user_states)
    blocks = [(np.arange(cached), user_states), (np.arange(cached, len(samples)), None)]
    users = torch.cat([group.sharded(lambda part, rows=rows, states=states: towers.encode(
        "user", user_cf[rows[part]], [user_tokens[r] for r in rows[part]], pick(states, part)), len(rows))
        for rows, states in blocks if len(rows)]).to(device)
    towers.item_outputs = None
    outputs = group.sharded(lambda part: towers.encode_items(part), towers.n_items)
    towers.item_outputs = outputs
    towers.item_basis = outputs if config.history_pooling else None
    pooled = None if towers.item_basis is None else towers.pooled_history(
        [sequences[u][:e] for u, e in zip(samples.users, samples.ends)]).to(device)
    return users, outputs.to(device), pooled


def _fit_heads(users: torch.Tensor, items: torch.Tensor, pooled: torch.Tensor | None, samples: AlignmentSamples,
               user_cf: torch.Tensor, teacher_items: torch.Tensor | None, log_q: torch.Tensor,
               config: AlignmentConfig, rng: np.random.Generator, group: Group,
               extra_teacher: Callable | None, checkpointer: Checkpointer | None = None,
               borrowed: tuple[torch.Tensor, np.ndarray] | None = None) -> tuple[OutputHeads, float]:
    """Output heads trained on fixed vectors (:func:`_head_inputs`); returns them (in eval mode) and the last
    epoch's mean loss.

    Same objective and candidates as the prefixes' (the whole catalogue with
    ``negatives="catalogue"``); Adam with a cosine decay to 0. With
    ``pooled`` the user head also reads each sample's mean history vector.
    With a ``checkpointer``, the heads, the optimizer, the decay and the
    random state are saved at the end of an epoch once ``checkpointer.every``
    head steps have passed since the last save, and a resumed fit continues
    after the last saved epoch, to the same heads as an uninterrupted fit.
    ``borrowed``: the catalogue's vectors encoded with borrowed ID vectors and the items' text neighbours, from which
    ``config.id_dropout`` of each step's candidates are taken, scored by the teacher as added items.
    """
    device = users.device
    n_items = items.shape[0]
    # the MLP's first layer is drawn from the fit's seed (linear heads draw nothing: their fits are unchanged)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31))) if config.head_hidden else None
    heads = OutputHeads(users.shape[1], config.head_hidden, generator, pool=pooled is not None).to(device)
    optimizer = torch.optim.Adam(heads.parameters(), lr=config.head_lr)
    batch = _batch_size(config, heads=True) * group.size  # the global batch: every rank trains the same heads
    per_epoch = -(-len(samples) // batch)
    total = config.head_epochs * per_epoch
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    scale = users.shape[1] ** -0.5
    catalogue = config.negatives == "catalogue"
    loss_sum, first, unsaved = 0.0, 1, 0
    saved = checkpointer.read_head_epochs() if checkpointer is not None else None
    if saved is not None:  # after the heads were drawn: the saved state replaces them and the random state
        first, loss_sum = _restore_head_epochs(heads, optimizer, decay, rng, *saved)
        logger.info("resuming the output heads after epoch %d of %d", first - 1, config.head_epochs)
    for epoch in tqdm(range(first, config.head_epochs + 1), desc="output heads", unit="epoch",
                      initial=first - 1, total=config.head_epochs, disable=not config.progress, leave=False):
        order, loss_sum = rng.permutation(len(samples)), 0.0
        for step in range(per_epoch):
            rows = order[step * batch:(step + 1) * batch]
            if catalogue:
                candidates, target = None, samples.targets[rows]
            else:
                extra = rng.integers(0, n_items, config.n_random_negatives)
                candidates, target = np.unique(np.concatenate([samples.targets[rows], extra]), return_inverse=True)
                target = target[:len(rows)]
            inputs = items if candidates is None else items[torch.as_tensor(candidates, device=device)]
            teacher_of = None
            if borrowed is not None:
                listed = np.arange(n_items) if candidates is None else candidates
                drop = rng.random(len(listed)) < config.id_dropout
                inputs = torch.where(torch.as_tensor(drop, device=device)[:, None],
                                     borrowed[0][torch.as_tensor(listed, device=device)], inputs)
                teacher_of = _borrowed_teacher_of(candidates, listed[drop], borrowed[1], n_items)
            h_i = heads("item", inputs)
            batch_rows = torch.as_tensor(rows, device=device)
            h_u = heads("user", users[batch_rows], None if pooled is None else pooled[batch_rows])
            scores = h_u @ h_i.T * scale
            loss = _objective(scores, torch.as_tensor(target, device=device), rows, candidates, user_cf,
                              teacher_items, log_q, config, extra_teacher, teacher_of)
            _optimizer_step(heads, optimizer, loss, config, epoch, step + 1, heads=True)
            decay.step()
            loss_sum += float(loss.detach())
        unsaved += per_epoch
        # after the last epoch the stage's own ``heads/`` checkpoint follows at once, so nothing is saved here
        if checkpointer is not None and unsaved >= checkpointer.every and epoch < config.head_epochs:
            checkpointer.write_head_epochs(*_head_epochs_checkpoint(heads, optimizer, decay, rng, epoch, loss_sum))
            unsaved = 0
    group.broadcast_module(heads)  # every rank trained the same heads; rank 0's are kept bit for bit
    return heads.eval(), loss_sum / per_epoch


def _head_epochs_checkpoint(heads: OutputHeads, optimizer: torch.optim.Optimizer,
                            decay: torch.optim.lr_scheduler.LambdaLR, rng: np.random.Generator, epoch: int,
                            loss_sum: float) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The heads' training after ``epoch``, as (meta, tensors): what :func:`_restore_head_epochs` resumes from."""
    optimizer_meta, tensors = optimizer_state(optimizer)
    tensors.update({f"heads.{k}": v for k, v in heads.state_dict().items()})
    meta = {"epoch": epoch, "loss_sum": loss_sum, "optimizer": optimizer_meta, "decay": decay.state_dict(),
            "numpy_rng": rng.bit_generator.state}
    return meta, tensors


def _restore_head_epochs(heads: OutputHeads, optimizer: torch.optim.Optimizer,
                         decay: torch.optim.lr_scheduler.LambdaLR, rng: np.random.Generator, meta: dict[str, Any],
                         tensors: dict[str, torch.Tensor]) -> tuple[int, float]:
    """Put back what :func:`_head_epochs_checkpoint` saved; returns the first epoch still to train and the saved
    epoch's loss sum (the stage's loss when no epoch is left)."""
    heads.load_state_dict({k.removeprefix("heads."): v for k, v in tensors.items() if k.startswith("heads.")})
    restore_optimizer(optimizer, meta["optimizer"], tensors)
    decay.load_state_dict(meta["decay"])
    rng.bit_generator.state = meta["numpy_rng"]
    return meta["epoch"] + 1, meta["loss_sum"]


def _optimizer_step(aligner: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                    config: AlignmentConfig, epoch: int, step: int, heads: bool = False) -> None:
    """Backward, NaN guards, clipping and the update; a non-finite loss or gradient stops with a clear error.
    ``heads``: the module is the output heads (the messages name their epochs and learning rate)."""
    lr = f"head_lr (now {config.head_lr})" if heads else f"lr (now {config.lr})"
    epoch = f"output-head epoch {epoch}" if heads else f"epoch {epoch}"
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the alignment loss became {float(loss.detach())} at {epoch}, step {step}; "
                                 f"lower {lr} or max_grad_norm.")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    bad = [name for name, p in aligner.named_parameters()  # before clipping spreads a NaN
           if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise FloatingPointError(
            f"the gradient of {', '.join(bad)} became non-finite at {epoch}, step {step} (the loss was "
            f"{float(loss.detach()):.4g}); lower {lr} or check the inputs."
        )
    torch.nn.utils.clip_grad_norm_(aligner.parameters(), config.max_grad_norm)
    optimizer.step()


def ranking_loss(scores: torch.Tensor, positive: torch.Tensor, loss: str) -> torch.Tensor:
    """Softmax cross-entropy, or BPR against every other item of the batch, for scores (B, M)."""
    if loss == "softmax":
        return torch.nn.functional.cross_entropy(scores, positive)
    rows = torch.arange(len(positive), device=scores.device)
    pos = scores[rows, positive][:, None]  # (B, 1)
    negative = torch.ones_like(scores, dtype=torch.bool)
    negative[rows, positive] = False
    if not negative.any():  # a batch whose samples share one target item: nothing to rank against
        return scores.sum() * 0.0
    return -torch.nn.functional.logsigmoid(pos - scores)[negative].mean()


def _teacher_scores(user_cf: torch.Tensor, item_cf: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
    """The CF backbone's scores (B, M) of the candidates (every item when ``None``): the best dot product
    over each user's K interests, as the backbone itself ranks. ``item_cf`` is (n_items, d), on the device."""
    items = item_cf if candidates is None else item_cf[candidates]  # (M, d)
    return torch.einsum("bkd,md->bkm", user_cf.float(), items).amax(1)


def distillation_loss(scores: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of the student's softmax against the teacher's (scores and teacher both (B, M)).

    The backbone's whole ranking of the candidates is a far richer signal per
    sample than the one next item: it lets a few thousand samples carry the
    backbone's geometry into the towers.
    """
    target = torch.softmax(teacher.float() / temperature, dim=-1)
    return -(target * torch.log_softmax(scores, dim=-1)).sum(-1).mean()


def _prepare_prompts(towers: Towers, tower: str, tokens: list[list[int]], start: int, budget: float,
                     keys_values: bool, progress: bool) -> tuple[list[torch.Tensor] | None, torch.Tensor | None, float]:
    """What training needs of every prompt once per fit, in one pass of the frozen LLM per batch.

    Returns the outputs of the un-prefixed lower layers (``None`` when
    ``start`` is 0 or they do not fit ``budget`` bytes: then they are
    recomputed per batch), the mean text keys/values of the prefixed layers
    for the alignment loss (``None`` unless ``keys_values``), and the budget left.
    """
    llm = towers.llm
    width = llm.spec.hidden_size * torch.finfo(llm.dtype).bits // 8
    need = sum(len(t) for t in tokens) * width
    cache = start > 0 and need <= budget
    if start > 0 and not cache and budget > 0:
        logger.info("lower-layer states of %d %s prompts need %.0f MiB, over the budget of %.0f MiB: "
                    "recomputed per batch", len(tokens), tower, need / 2**20, budget / 2**20)
    if not (cache or keys_values):
        return None, None, budget
    n_prefix = towers.aligner.tower(tower).config.length
    states: list[torch.Tensor] | None = [torch.empty(0)] * len(tokens) if cache else None
    text_kv = None
    for rows in tqdm(length_sorted_batches(tokens, 32), desc=f"{tower} prompts (once per fit)",
                     disable=not progress, leave=False):
        lower, kv = llm.prompt_states([tokens[r] for r in rows], start, n_prefix, states=cache,
                                      keys_values=keys_values)
        if cache:
            for row, state in zip(rows, lower):
                states[row] = state.cpu()
        if keys_values:
            if text_kv is None:
                text_kv = torch.empty(len(tokens), kv.shape[1] - start, *kv.shape[2:])
            text_kv[torch.as_tensor(rows)] = kv[:, start:].cpu()
    return states, text_kv, budget - need if cache else budget


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



def _catalogue_bank(run: TrainingState, towers: Towers, group: Group, refresh: int,
                    device: torch.device) -> torch.Tensor:
    """Every item's vector (n_items, hidden) under the current alignment module, no gradient, on ``device``.

    Re-encoded when ``refresh`` steps have passed since the last encoding
    (kept in ``run``, so a checkpoint holds the bank a resumed fit must use).
    The catalogue softmax scores each user against these; the batch's own
    items are encoded live and replace their rows. Between refreshes the
    other rows are up to ``refresh`` steps stale.
    """
    if run.bank is None or run.global_step - run.bank_step >= refresh:
        aligner = towers.aligner
        was_training = aligner.training
        aligner.eval()
        run.bank = group.sharded(lambda part: towers.encode_items(part), towers.n_items).to(device)
        aligner.train(was_training)
        run.bank_step = run.global_step
    return run.bank
