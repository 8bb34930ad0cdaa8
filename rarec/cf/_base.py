"""The interface every CF backbone implements, and what they share."""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .._device import resolve_device
from .._version import __version__
from ..data import InteractionLog
from ..metrics import full_ranking_metrics
from ._histories import SequenceStore, check_histories
from ._training import TrainingConfig, train_with_early_stopping

#: Histories encoded per forward pass when scoring or embedding users.
HISTORY_BATCH = 512
FORMAT_VERSION = 1


class CFBackbone(ABC):
    """An ID-based recommender: item embeddings, and user embeddings from a history.

    Subclasses define the torch module, what a training batch is, and how a
    history becomes ``K`` interest vectors (``K = 1`` for single-vector models).
    The user-facing methods (``fit``, embeddings, scoring, ``recommend``,
    ``save``/``load``) live here.

    Attributes (after ``fit``)
    --------------------------
    module_ : torch.nn.Module
        The trained network, in eval mode.
    n_users_, n_items_ : int
        Sizes of the id maps of the training log.
    train_sequences_ : SequenceStore
        Every user's training sequence (item indices, time order).
    training_log_ : list of dict
        Per-epoch loss, seconds and validation NDCG@10.
    """

    name: ClassVar[str]
    #: Whether user embeddings come from the history alone (else from a per-user table).
    inductive: ClassVar[bool] = True

    def __init__(self, config: Any, training: TrainingConfig | None = None) -> None:
        self.config = config
        self.training = training if training is not None else TrainingConfig()

    # ----------------------------------------------------------- subclass API
    @abstractmethod
    def _build_module(self, n_users: int, n_items: int) -> torch.nn.Module:
        """A fresh network for this catalogue."""

    @abstractmethod
    def _epoch_batches(self, store: SequenceStore, generator: torch.Generator) -> Iterator[Any]:
        """The training batches of one epoch, shuffled with ``generator``."""

    def _optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer of ``module_``; ``None``: Adam with the training config's lr and weight decay."""
        return None

    def _samples_per_epoch(self, store: SequenceStore) -> int | None:
        """How many samples one epoch's batches hold (for the progress bar's estimate); ``None`` if unknown."""
        return None

    @abstractmethod
    def _batch_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one batch (module in train mode)."""

    @abstractmethod
    def _encode(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        """User vectors (n, K, d) for validated histories; ``users`` holds indices or -1 (unknown)."""

    @abstractmethod
    def _item_table(self) -> torch.Tensor:
        """Item embeddings (n_items, d) on the module's device."""

    # ----------------------------------------------------------------- fitting
    def fit(self, train: InteractionLog, valid: InteractionLog | None = None) -> CFBackbone:
        """Train on ``train``; early-stop on validation NDCG@10 when ``valid`` is given.

        ``valid`` must share the id maps of ``train`` (as the parts of
        :func:`rarec.model_selection.leave_last_out` do).
        """
        if not isinstance(train, InteractionLog):
            raise TypeError(f"train must be an InteractionLog; got {type(train).__name__}.")
        if len(train) == 0:
            raise ValueError("the training log is empty.")
        if valid is not None and (valid.n_items != train.n_items or valid.n_users != train.n_users):
            raise ValueError("valid must share the user and item id maps of train (split one log).")
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        self.train_sequences_ = SequenceStore(train.user_sequences())
        self.device_ = resolve_device(self.training.device)
        seed = self.training.random_state
        # fork_rng restores the global RNG afterwards: rarec never leaves global seeds behind.
        with torch.random.fork_rng(devices=[self.device_] if self.device_.type == "cuda" else []):
            if seed is None:
                torch.seed()
            else:
                torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
            self.module_ = self._build_module(self.n_users_, self.n_items_).to(self.device_)
            validate = None
            if valid is not None and len(valid) > 0:
                scorer = self.scorer(train)
                validate = lambda: full_ranking_metrics(  # noqa: E731
                    scorer, valid, train, ks=[10], metrics=["ndcg"])["ndcg@10"]
            samples = self._samples_per_epoch(self.train_sequences_)
            self.training_log_ = train_with_early_stopping(
                self.module_, lambda: self._epoch_batches(self.train_sequences_, generator), self._batch_loss,
                validate, self.training, desc=f"{self.name} training",
                batches_per_epoch=None if samples is None else -(-samples // self.training.batch_size),
                optimizer=self._optimizer(),
            )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(train) first.")

    # ------------------------------------------------------------- embeddings
    @property
    def n_interests(self) -> int:
        """Vectors per user (K)."""
        return 1

    def item_embeddings(self) -> torch.Tensor:
        """Item embeddings, shape (n_items, d), on the CPU."""
        self._check_fitted()
        with torch.no_grad():
            return self._item_table().detach().float().cpu()

    def user_embeddings(self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None) -> torch.Tensor:
        """User vectors, shape (n, K, d), on the CPU, for any histories of item indices.

        Parameters
        ----------
        histories : sequence of int sequences
            Each user's items, oldest first. Inductive backbones use only these;
            they may be histories never seen in training.
        users : sequence of int, optional
            User indices for transductive backbones (BPR, precomputed); ``-1``
            (or ``None`` for all) means an unknown user, who gets the fallback
            of that backbone.
        """
        self._check_fitted()
        hist = check_histories(histories, self.n_items_)
        user_idx = self._check_users(users, len(hist))
        out = []
        self.module_.eval()
        with torch.no_grad():
            for start in range(0, len(hist), HISTORY_BATCH):
                stop = start + HISTORY_BATCH
                out.append(self._encode(hist[start:stop], user_idx[start:stop]).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.n_interests, self._item_table().shape[1])

    def _check_users(self, users: Sequence[int] | None, n: int) -> np.ndarray:
        if users is None:
            return np.full(n, -1, dtype=np.int64)
        idx = np.asarray(users, dtype=np.int64).reshape(-1)
        if idx.shape[0] != n:
            raise ValueError(f"users has {idx.shape[0]} entries but there are {n} histories.")
        if idx.size and idx.max() >= self.n_users_:
            raise IndexError(f"user index {int(idx.max())} is out of range for {self.n_users_} users.")
        return idx

    # ---------------------------------------------------------------- scoring
    def score_histories(self, histories: Sequence[Sequence[int]], users: Sequence[int] | None = None) -> torch.Tensor:
        """Scores of every item, shape (n, n_items): the best dot product over the user's K interests."""
        vectors = self.user_embeddings(histories, users)  # (n, K, d)
        items = self.item_embeddings()  # (n_items, d)
        return (vectors @ items.T).amax(dim=1)  # (n, K, n_items) -> (n, n_items)

    def scorer(self, history: InteractionLog | None = None) -> Callable[[np.ndarray], torch.Tensor]:
        """A function ``users -> scores (len(users), n_items)`` that describes users by their
        sequences in ``history`` (default: the training log), for :func:`full_ranking_metrics`."""
        store = self._history_store(history)

        def score(users: np.ndarray) -> torch.Tensor:
            users = np.asarray(users, dtype=np.int64)
            return self.score_histories(store.sequences(users), users)

        return score

    def _history_store(self, history: InteractionLog | None) -> SequenceStore:
        """The sequences users are described by: the training log's, or those of ``history``."""
        self._check_fitted()
        if history is None:
            return self.train_sequences_
        if history.n_items != self.n_items_ or history.n_users != self.n_users_:
            raise ValueError("history must share the id maps of the training log.")
        return SequenceStore(history.user_sequences())

    def recommend(
        self, users: Sequence[int], k: int = 10, history: InteractionLog | None = None, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores for known users, shape (n, k) each.

        Items in the user's history (``history``, default the training log)
        are excluded when ``exclude_seen``; a user who has seen almost
        everything then gets fewer than ``k`` real items, padded with index
        ``-1`` and score ``-inf``.
        """
        self._check_fitted()
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or not 1 <= k <= self.n_items_:
            raise ValueError(f"k must be an int in [1, n_items={self.n_items_}]; got {k!r}.")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        store = self._history_store(history)
        seen = store.sequences(users)
        scores = self.score_histories(seen, users)
        if exclude_seen:
            for row, items in enumerate(seen):
                scores[row, items] = -torch.inf
        top = torch.topk(scores, k, dim=1)
        items = top.indices.numpy().copy()
        items[torch.isinf(top.values).numpy()] = -1
        return items, top.values.numpy()

    # ------------------------------------------------------------ persistence
    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _load_extra(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def to_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(metadata, tensors)``: everything :meth:`from_state` needs, as JSON-safe values and CPU tensors."""
        self._check_fitted()
        tensors = {f"module.{k}": v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        tensors["sequences.indptr"] = torch.from_numpy(self.train_sequences_.indptr)
        tensors["sequences.flat"] = torch.from_numpy(self.train_sequences_.flat)
        tensors.update(self._extra_tensors())
        meta = {
            "format_version": FORMAT_VERSION,
            "rarec_version": __version__,
            "backbone": self.name,
            "config": asdict(self.config),
            "training": asdict(self.training),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "training_log": self.training_log_,
        }
        return meta, tensors

    @staticmethod
    def from_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor], device: str = "cpu",
                   source: str = "backbone state") -> CFBackbone:
        """Rebuild a fitted backbone from :meth:`to_state`'s output; ``source`` names it in errors."""
        from ._registry import BACKBONES

        if not isinstance(meta, dict):
            raise ValueError(f"{source}: the backbone metadata must be a JSON object.")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{source} was written by a newer rarec ({meta.get('rarec_version')}); upgrade rarec.")
        name = meta.get("backbone")
        if name not in BACKBONES:
            raise ValueError(f"{source} names an unknown backbone {name!r}.")
        cls = BACKBONES[name]
        tensors = dict(tensors)
        try:
            training = TrainingConfig(**{**meta["training"], "device": device})
            backbone = cls(cls.config_class(**meta["config"]), training)
            backbone.n_users_, backbone.n_items_ = int(meta["n_users"]), int(meta["n_items"])
            indptr, flat = tensors.pop("sequences.indptr").numpy(), tensors.pop("sequences.flat").numpy()
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source} is incomplete or was edited by hand ({type(exc).__name__}: {exc}).") from None
        if len(indptr) != backbone.n_users_ + 1 or indptr[-1] != len(flat):
            raise ValueError(f"{source}: the stored training sequences do not match {backbone.n_users_} users.")
        backbone.device_ = resolve_device(device)
        backbone.train_sequences_ = SequenceStore([])
        backbone.train_sequences_.indptr, backbone.train_sequences_.flat = indptr, flat
        backbone.train_sequences_.lengths = np.diff(indptr)
        backbone._load_extra(tensors)
        module = backbone._build_module(backbone.n_users_, backbone.n_items_)
        state = {k.removeprefix("module."): v for k, v in tensors.items() if k.startswith("module.")}
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{source}: the stored weights do not fit the stored configuration ({exc}).") from None
        backbone.module_ = module.to(backbone.device_).eval()
        backbone.training_log_ = meta.get("training_log", [])
        return backbone

    def save(self, path: str | os.PathLike) -> None:
        """Write ``backbone.json`` and ``backbone.safetensors`` into the folder ``path``."""
        meta, tensors = self.to_state()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path / "backbone.safetensors"))
        (path / "backbone.json").write_text(json.dumps(meta, indent=2, sort_keys=True))

    @staticmethod
    def load(path: str | os.PathLike, device: str = "cpu") -> CFBackbone:
        """Restore a backbone written by :meth:`save` (no pickle: JSON + safetensors)."""
        path = Path(path)
        try:
            meta = json.loads((path / "backbone.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} holds no backbone.json; is it a folder written by save()?") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path / 'backbone.json'} is not valid JSON ({exc}).") from None
        try:
            tensors = load_file(str(path / "backbone.safetensors"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} holds no backbone.safetensors.") from None
        except Exception as exc:  # safetensors raises its own error type for damaged files
            raise ValueError(f"{path / 'backbone.safetensors'} is damaged or truncated ({exc}).") from None
        return CFBackbone.from_state(meta, tensors, device, source=str(path / "backbone.json"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"
