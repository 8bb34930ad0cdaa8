"""Checkpoints of one fit: the fitted CF backbone, the alignment trainer's state, the output heads, the item
vectors so far.

A :class:`FitCheckpointer` owns ``checkpoint_dir`` for one fit. It stamps
everything it writes with the fit's fingerprint (parameters, seed and data)
and hands back only what carries the same stamp, so a resumed fit never
mixes in the state of another. Layout::

    checkpoint_dir/
        latest.json, step-00000120/     the alignment trainer's latest state
        backbone/                       the fitted CF backbone (written once)
        head_epochs/                    the output heads' training so far (until the stage ends)
        heads/                          the output heads' stage, once it has run
        item_vectors/                   the catalogue encoded so far (resumable)

Only the main process of a distributed fit writes.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._checkpoint import LATEST, fingerprint, latest_name, read_checkpoint, write_checkpoint
from ._errors import ModelFormatError
from .cf import CFBackbone
from .data import InteractionLog

#: the folders of the heads' stage, of its training so far and of the catalogue encoded so far
HEADS, HEAD_EPOCHS, ITEM_VECTORS = "heads", "head_epochs", "item_vectors"


class FitCheckpointer:
    """Checkpoints of the fit whose fingerprint is ``stamp``, under ``directory``.

    Parameters
    ----------
    directory : path
    stamp : str
        The fit's fingerprint (:meth:`stamp_of`).
    every : int
        Training steps (and, for the output heads, their steps; when encoding the catalogue, encoding batches)
        between checkpoints.
    writer : bool
        Whether this process writes (the main rank of a distributed fit).
    """

    def __init__(self, directory: str | os.PathLike, stamp: str, every: int, writer: bool = True,
                 seed: int | None = None) -> None:
        self.directory, self.stamp, self.every, self.writer = Path(directory), stamp, every, writer
        self.seed = seed  # written with every checkpoint: a fit without random_state resumes with the seed it drew
        self.resuming = False
        self._training: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None  # read once, by begin()

    @staticmethod
    def saved_seed(directory: str | os.PathLike) -> int | None:
        """The seed of the fit whose checkpoints are in ``directory`` (``None`` when there are none)."""
        directory = Path(directory)
        for folder in (directory, directory / "backbone"):
            saved = read_checkpoint(folder, tensors=False) if folder.is_dir() else None
            if saved is not None and isinstance(saved[0].get("seed"), int):
                return saved[0]["seed"]
        return None

    def begin(self, resume: bool) -> bool:
        """Start the fit: with ``resume``, continue from this fit's latest state when there is one (a warning
        when there is none; an error when it is another fit's). Returns whether the fit resumes."""
        if resume:
            saved = read_checkpoint(self.directory)
            if saved is None:
                warnings.warn(f"resume=True, but {self.directory} holds no checkpoint: fitting from the start.",
                              UserWarning, stacklevel=4)
            elif saved[0].get("fingerprint") != self.stamp:  # refused before any work is done
                raise ValueError(f"the checkpoint in {self.directory} was written by a fit with other parameters, "
                                 "seed or data; resume with the same ones, or use another checkpoint_dir (or delete "
                                 "it) to start afresh.")
            else:
                self.resuming, self._training = True, saved
        if not self.resuming and self.writer:
            self._clear()
        return self.resuming

    def _clear(self) -> None:
        """Remove what an earlier fit left in the folder (its training state, heads and item vectors), so that a
        fresh fit interrupted before it writes its own is never resumed from them. Only the files this class
        writes are touched; the backbone folder is written again by the fresh fit."""
        try:
            name = latest_name(self.directory)
        except ModelFormatError:  # a damaged latest.json: removed below, its checkpoint is never read again
            name = None
        for stale in [self.directory / HEADS, self.directory / HEAD_EPOCHS, self.directory / ITEM_VECTORS] + \
                ([self.directory / name] if name is not None else []):
            shutil.rmtree(stale, ignore_errors=True)
        (self.directory / LATEST).unlink(missing_ok=True)

    @staticmethod
    def stamp_of(params: dict[str, Any], seed: int, log: InteractionLog) -> str:
        """The fingerprint of a fit: what a resumed fit must share with the interrupted one."""
        llm = params.get("llm")
        llm = llm if llm is None or isinstance(llm, str | os.PathLike) else type(llm).__name__
        described = {**params, "llm": str(llm), "seed": seed, "users": log.users.to_list(),
                     "items": log.items.to_list()}
        arrays = [log.user_codes, log.item_codes] + ([] if log.timestamps is None else [log.timestamps])
        return fingerprint(described, arrays)

    # ------------------------------------------------------ training state
    def read_training(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The alignment state this fit resumes from (checked by :meth:`begin`), else ``None``."""
        return self._training

    def write_training(self, name: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if self.writer:
            write_checkpoint(self.directory, name, {"fingerprint": self.stamp, "seed": self.seed, **meta}, tensors)

    # --------------------------------------------------------- output heads
    def write_heads(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """What the output heads' stage leaves (the trainer's ``_heads_checkpoint``), so that a fit resumed
        after it does not encode the samples' users and the catalogue again to retrain them."""
        if self.writer:
            write_checkpoint(self.directory / HEADS, "heads", {"fingerprint": self.stamp, **meta}, tensors)
            shutil.rmtree(self.directory / HEAD_EPOCHS, ignore_errors=True)  # the finished stage supersedes it

    def read_heads(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The heads' stage of the fit this one resumes, else ``None`` (a fresh fit, or none was saved)."""
        return self._resumed(HEADS)

    def write_head_epochs(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """The output heads' training after an epoch (the trainer's ``_head_epochs_checkpoint``), so that a fit
        stopped in the middle of the heads' stage resumes after that epoch."""
        if self.writer:
            write_checkpoint(self.directory / HEAD_EPOCHS, f"epoch-{meta['epoch']:04d}",
                             {"fingerprint": self.stamp, **meta}, tensors)

    def read_head_epochs(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """The heads' training of the fit this one resumes, as far as it was saved, else ``None``."""
        return self._resumed(HEAD_EPOCHS)

    def _resumed(self, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """What the fit this one resumes saved in the folder ``name``, when it carries this fit's stamp."""
        folder = self.directory / name
        saved = read_checkpoint(folder) if self.resuming and folder.is_dir() else None
        return saved if saved is not None and saved[0].get("fingerprint") == self.stamp else None

    # ------------------------------------------------------------- backbone
    def write_backbone(self, backbone: CFBackbone) -> None:
        """The fitted CF backbone, so that a resumed fit does not train it again."""
        if self.writer:
            meta, tensors = backbone.to_state()
            write_checkpoint(self.directory / "backbone", "cf", {"fingerprint": self.stamp, "seed": self.seed,
                                                                 "backbone": meta}, tensors)

    def read_backbone(self, device: torch.device) -> CFBackbone:
        folder = self.directory / "backbone"
        saved = read_checkpoint(folder)
        if saved is None or saved[0].get("fingerprint") != self.stamp:
            raise ModelFormatError(f"{folder} holds no CF backbone of this fit; delete {self.directory} to start "
                                   "afresh.")
        return CFBackbone.from_state(saved[0]["backbone"], saved[1], str(device), source=f"the checkpoint in {folder}")

    # -------------------------------------------------- catalogue encoding
    def encode_catalogue(self, encode_items: Callable[[np.ndarray], torch.Tensor], lengths: np.ndarray,
                         hidden: int, batch: int) -> torch.Tensor:
        """Every item's vector (n_items, hidden), resumable: the vectors done so far are saved every
        ``every`` encoding batches of ``batch`` items, and a resumed fit encodes only the rest.

        ``lengths`` (each item prompt's token count) orders the work shortest first (little padding).
        """
        n_items = len(lengths)
        folder = self.directory / ITEM_VECTORS
        out = torch.zeros(n_items, hidden)
        done = torch.zeros(n_items, dtype=torch.bool)
        saved = read_checkpoint(folder)
        if self.resuming and saved is not None and saved[0].get("fingerprint") == self.stamp:
            out, done = saved[1]["vectors"], saved[1]["done"]
        todo = np.flatnonzero(~done.numpy())
        todo = todo[np.argsort(lengths[todo], kind="stable")]
        chunk = batch * self.every
        for begin in range(0, len(todo), chunk):
            part = todo[begin:begin + chunk]
            out[torch.as_tensor(part)] = encode_items(part)
            done[torch.as_tensor(part)] = True
            if self.writer:
                write_checkpoint(folder, f"items-{int(done.sum()):09d}", {"fingerprint": self.stamp},
                                 {"vectors": out, "done": done})
        return out
