"""The two towers: a frozen LLM, the prompts, the CF tables and the alignment module that joins them.

:class:`Towers` is what turns a user's history or an item into a vector. It
holds everything that vector depends on — the frozen LLM (loaded lazily and
checked against the one the module was trained with), the prompt builder and
the item prompts' tokens, the CF item table (extended for items added
after fit, see :mod:`._cold_items`), the CF user table of the known users, and the trained
:class:`TwoTowerAligner` — and nothing about training or ranking.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._errors import LLMMismatchError, ModelFormatError
from ..cf import CFBackbone, CooccurrenceFactors, TextFactors, history_matrix
from ..data import ItemText
from ..llm import FrozenLLM, LLMSpec, PromptBuilder
from ._cold_items import TextNeighbours, with_cold_items
from ._projector import PrefixConfig, PrefixProjector
from ._two_tower import OutputHeads, TwoTowerAligner

@dataclasses.dataclass
class PromptSettings:
    """How users and items are put into words, and how much history the CF backbone sees."""

    user_template: str
    item_template: str
    n_history_titles: int  # most recent titles spelled out in the user prompt
    max_prompt_tokens: int  # token budget of one prompt
    max_history: int  # most recent items given to the CF backbone


@dataclasses.dataclass
class LLMSource:
    """Where the frozen LLM comes from, so that it can be (re)loaded on first use."""

    llm: Any  # None (the default LLM), a hub id, a folder, a .gguf file, or a (model, tokenizer) pair
    device: torch.device
    dtype: torch.dtype | None
    verbose: bool = False

    def load(self) -> FrozenLLM:
        return FrozenLLM.load(self.llm, device=self.device, dtype=self.dtype, verbose=self.verbose)


class Towers:
    """User and item towers over one frozen LLM.

    Parameters
    ----------
    backbone : CFBackbone
        The fitted (frozen) CF model of stage 1.
    texts : list of ItemText or None
        Item texts in item-index order.
    prompts : PromptSettings
    source : LLMSource
    aligner : TwoTowerAligner
    llm : FrozenLLM, optional
        The LLM, already loaded; else loaded from ``source`` on first use.
    llm_identity : dict, optional
        Fingerprints of the LLM the aligner was trained with; a lazily loaded
        LLM must match them. Defaults to ``llm``'s.
    """

    #: Prompts per forward when encoding users and items (no gradients; prompts sorted by length, so little
    #: padding). Measured against 32 with SmolLM2-135M: 5.6x the items/s on an H200 (fp32), 1.14x on a 2-core
    #: CPU (docs/benchmarks.md, "Alignment speed by device").
    encode_batch = 256

    def __init__(self, backbone: CFBackbone, texts: Sequence[ItemText | None], prompts: PromptSettings,
                 source: LLMSource, aligner: TwoTowerAligner, llm: FrozenLLM | None = None,
                 llm_identity: dict | None = None, factors: CooccurrenceFactors | None = None,
                 text_factors: TextFactors | None = None) -> None:
        if llm is None and llm_identity is None:
            raise ValueError("Towers needs the LLM or the identity of the one it was trained with.")
        self.backbone = backbone
        #: EASE factors appended to every ID vector (``cooccurrence_factors``), or None.
        self.factors = factors
        #: TF-IDF factors of the item texts appended after them (``text_factors``, off by default), or None.
        self.text_factors = text_factors
        self.texts = list(texts)
        self.settings = prompts
        self.source = source
        self.aligner = aligner
        self.llm_identity = dict(llm.identity if llm_identity is None else llm_identity)
        self._llm = llm
        self._prompts: PromptBuilder | None = None
        self._item_tokens: list[list[int]] | None = None
        self._neighbours: TextNeighbours | None = None  # the known items' TF-IDF index, built by the first add_items
        items = backbone.item_embeddings()
        if factors is not None:
            items = torch.cat([items, factors.items], dim=1)
        self.item_cf = self._item_id_vectors(items, self.texts)[:, None, :]  # (n_items, 1, d)
        self.cf_user_vectors: torch.Tensor | None = None  # (n_users, K, d), set by set_user_table
        self._fallback_cf: torch.Tensor | None = None
        #: Lower-layer states of the item prompts (prefixes in the top layers only), kept while fitting.
        self.item_states: list[torch.Tensor] | None = None
        #: The catalogue's LLM outputs before the output heads, kept while fitting once the prefixes are final
        #: (the heads' stage encodes them): later catalogue encodings only apply the heads.
        self.item_outputs: torch.Tensor | None = None
        #: The catalogue's LLM outputs before the heads (n_items, hidden), kept (and saved) when the user head pools
        #: the history's item vectors (``history_pooling``); None otherwise.
        self.item_basis: torch.Tensor | None = None

    @classmethod
    def build(cls, backbone: CFBackbone, texts: Sequence[ItemText | None], prompts: PromptSettings,
              source: LLMSource, llm: FrozenLLM, config: PrefixConfig,
              generator: torch.Generator | None = None, factors: CooccurrenceFactors | None = None,
              text_factors: TextFactors | None = None) -> Towers:
        """New towers with an untrained alignment module (initial weights drawn from ``generator``);
        ``config`` is shared by both towers, except the user tower's K interests; its ``id_dim`` is the width of
        the ID vectors (the backbone's, plus the rank of each factor set given)."""
        user = PrefixProjector(llm.spec, dataclasses.replace(config, n_interests=backbone.n_interests), generator)
        item = PrefixProjector(llm.spec, dataclasses.replace(config, n_interests=1), generator)
        return cls(backbone, texts, prompts, source, TwoTowerAligner(user, item).to(llm.device), llm=llm,
                   factors=factors, text_factors=text_factors)

    # ------------------------------------------------------------------ LLM
    @property
    def llm(self) -> FrozenLLM:
        """The frozen LLM, loaded on first use and checked against the one the aligner was trained with."""
        if self._llm is None:
            self._llm = self._checked(self.source.load())
        return self._llm

    def _checked(self, llm: FrozenLLM) -> FrozenLLM:
        saved, found = self.llm_identity, llm.identity
        for key in ("config_sha256", "weights_sha256"):
            if saved.get(key) is not None and saved.get(key) != found.get(key):
                origin = saved.get("source", "an unknown LLM")
                origin = "an in-memory (model, tokenizer) pair" if origin == "object" else repr(origin)
                given = "the default LLM" if self.source.llm is None else repr(found.get("source"))
                raise LLMMismatchError(
                    f"this recommender was aligned with {origin} ({key[:-7]} {saved[key]}), but {given} "
                    f"has {key[:-7]} {found.get(key)}. Load it with the LLM it was trained with: "
                    "RARecommender.load(path, llm=...)."
                )
        return llm

    @property
    def prompts(self) -> PromptBuilder:
        """Builds the token ids of user and item prompts."""
        if self._prompts is None:
            s = self.settings
            self._prompts = PromptBuilder(self.llm.tokenizer, self.texts, s.user_template, s.item_template,
                                          s.n_history_titles, s.max_prompt_tokens)
        return self._prompts

    @property
    def item_tokens(self) -> list[list[int]]:
        """Prompt tokens of every item, in item-index order (built once)."""
        if self._item_tokens is None:
            self._item_tokens = [self.prompts.item_tokens(i) for i in range(self.n_items)]
        return self._item_tokens

    @property
    def n_items(self) -> int:
        return len(self.texts)

    @property
    def hidden_size(self) -> int:
        return self.aligner.user_prefix.spec.hidden_size

    def drop_llm(self) -> None:
        """Forget the LLM and what was built from it (pickles and copies reload it on first use)."""
        self._llm, self._prompts, self._item_tokens = None, None, None

    # ----------------------------------------------------------- CF vectors
    def window(self, history: np.ndarray) -> np.ndarray:
        """The most recent ``max_history`` items of a history (what the CF backbone and prompts see)."""
        return history[-self.settings.max_history:]

    def _item_id_vectors(self, known: torch.Tensor, texts: Sequence[ItemText | None],
                         neighbours: TextNeighbours | None = None) -> torch.Tensor:
        """The ID vectors (len(texts), d) of the items with these texts, given the known items' vectors before
        the text factors (``known``, the backbone's plus the co-occurrence factors): an item added after fit
        borrows them from its nearest known item by text (``neighbours``: the known items' index, if kept); the
        text factors are each item's own."""
        borrowed = with_cold_items(known, texts, neighbours)
        if self.text_factors is None:
            return borrowed
        return torch.cat([borrowed, self.text_factors.for_texts(texts)], dim=1)

    def id_block_widths(self) -> list[int]:
        """Widths of the ID vectors' blocks, in column order: the backbone's embedding, then the co-occurrence
        factors and the text factors when there are any."""
        added = [f.rank for f in (self.factors, self.text_factors) if f is not None]
        return [self.item_cf.shape[2] - sum(added), *added]

    def user_cf(self, histories: Sequence[np.ndarray], users: np.ndarray) -> torch.Tensor:
        """CF user vectors (n, K, d) of whole histories: the backbone reads each one's :meth:`window`, the
        factor sets (if any) all of it. Items added after fit are unknown to the backbone and skipped; a
        history of nothing else gets the mean CF vector of the known users."""
        known = self.backbone.n_items_
        kept = [np.asarray(h)[np.asarray(h) < known] for h in histories]
        empty = np.array([len(h) == 0 for h in kept], dtype=bool)
        if not empty.any():
            return self._id_vectors(kept, users)  # (n, K, d)
        if self._fallback_cf is None:
            raise ValueError("a history made only of items added after fit needs the known users' CF table.")
        out = torch.zeros(len(kept), self.backbone.n_interests, self.item_cf.shape[2])
        if (~empty).any():
            out[~empty] = self._id_vectors([h for h, e in zip(kept, empty) if not e], np.asarray(users)[~empty])
        out[empty] = self._fallback_cf
        return out

    def _id_vectors(self, histories: list[np.ndarray], users: np.ndarray) -> torch.Tensor:
        """The backbone's user vectors (n, K, d) of the windows of non-empty histories of known items, each
        interest followed by the whole history's factors (co-occurrence, then text) when there are any."""
        vectors = self.backbone.user_embeddings([self.window(h) for h in histories], users)
        parts = [f.users(histories) for f in (self.factors, self.text_factors) if f is not None]
        if not parts:
            return vectors
        added = torch.cat(parts, dim=1).to(vectors.dtype)[:, None, :].expand(-1, vectors.shape[1], -1)
        return torch.cat([vectors, added.to(vectors.device)], dim=2)

    def user_cf_table(self, sequences: Sequence[np.ndarray], users: np.ndarray, n_users: int) -> torch.Tensor:
        """CF vectors (n_users, K, d) of ``users`` from their sequences; zeros for every other user."""
        table = torch.zeros(n_users, self.backbone.n_interests, self.item_cf.shape[2])
        table[users] = self.user_cf([sequences[u] for u in users], users)
        return table

    def set_user_table(self, table: torch.Tensor, known: np.ndarray) -> None:
        """Keep the known users' CF vectors (score fusion, and the fallback of histories the backbone cannot read)."""
        self.cf_user_vectors = table
        self._fallback_cf = table[torch.as_tensor(known)].mean(0) if known.any() else None

    # -------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode(self, tower: str, cf: torch.Tensor, tokens: Sequence[Sequence[int]],
               states: Sequence[torch.Tensor] | None = None, batch: int | None = None,
               progress: bool = False, pooled: torch.Tensor | None = None, heads: bool = True) -> torch.Tensor:
        """Vectors (n, hidden) of one tower, in the order given (``pooled`` and ``heads``: as
        :meth:`TwoTowerAligner.encode`).

        Prompts are batched by length (less padding, so less compute); left
        padding with explicit positions makes a vector independent of its
        batch, so the order of encoding does not change any result.
        """
        device = self.llm.device
        out = torch.empty(len(tokens), self.llm.spec.hidden_size)
        for rows in tqdm(length_sorted_batches(tokens, batch or self.encode_batch), desc=f"encoding {tower}s",
                         disable=not progress, leave=False):
            vectors = self.aligner.encode(self.llm, tower, cf[rows].to(device), [tokens[r] for r in rows],
                                          pick(states, rows), None if pooled is None else pooled[rows].to(device),
                                          heads)
            out[torch.as_tensor(rows)] = vectors.float().cpu()
        return out

    def pooled_history(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """The mean of :attr:`item_basis` over each history's distinct items (n, hidden); zeros for an empty one."""
        rows = history_matrix([np.asarray(h) for h in histories], self.item_basis.shape[0], mean=True)
        return torch.as_tensor(rows @ self.item_basis.numpy())

    def encode_items(self, items: np.ndarray, progress: bool = False) -> torch.Tensor:
        """Item vectors (len(items), hidden), from the cached lower-layer states (or the catalogue's cached
        outputs, :attr:`item_outputs`) while fitting."""
        if self.item_outputs is not None:
            outputs = self.item_outputs[torch.as_tensor(items, dtype=torch.long)]
            with torch.no_grad():
                return self.aligner.through_heads("item", outputs.to(self.llm.device)).float().cpu()
        return self.encode("item", self.item_cf[items], [self.item_tokens[i] for i in items],
                           states=pick(self.item_states, items), progress=progress)

    def encode_users(self, histories: Sequence[np.ndarray], users: np.ndarray, progress: bool = False) -> torch.Tensor:
        """User vectors (n, hidden) from histories (item indices); ``users`` are their indices (-1: unknown)."""
        windows = [self.window(np.asarray(h)) for h in histories]
        tokens = [self.prompts.user_tokens(h) for h in windows]
        pooled = None if self.item_basis is None else self.pooled_history(histories)
        return self.encode("user", self.user_cf(histories, users), tokens, progress=progress, pooled=pooled)

    def encode_added_items(self, items: np.ndarray, progress: bool = False) -> torch.Tensor:
        """Vectors of items appended by :meth:`add_items`; their outputs before the heads join
        :attr:`item_basis` when the user head pools, so that histories may name them."""
        if self.item_basis is None:
            return self.encode_items(items, progress)
        raw = self.encode("item", self.item_cf[items], [self.item_tokens[i] for i in items], progress=progress,
                          heads=False)
        self.item_basis = torch.cat([self.item_basis, raw])
        with torch.no_grad():
            return self.aligner.through_heads("item", raw.to(self.llm.device)).float().cpu()

    def add_items(self, texts: Sequence[ItemText]) -> np.ndarray:
        """Append items unknown to the CF backbone; returns their indices. Each one's ID prefix uses the CF
        embedding of the known item closest in text (the mean CF item when none shares a word with it), and the
        text factors (if any) of its own text."""
        first, n_known = self.n_items, self.backbone.n_items_
        borrowed = self.item_cf.shape[2] - (0 if self.text_factors is None else self.text_factors.rank)
        # only the new rows: an added item's prefix depends on the known items and its own text alone
        if getattr(self, "_neighbours", None) is None:  # fitted once (the known items never change); not pickled
            self._neighbours = TextNeighbours(self.texts[:n_known])
        added = self._item_id_vectors(self.item_cf[:n_known, 0, :borrowed],
                                      self.texts[:n_known] + list(texts), self._neighbours)[n_known:]
        self.item_cf = torch.cat([self.item_cf, added[:, None, :]])
        self.texts += list(texts)
        if self._prompts is not None:  # the known items' prompts stay as they are; only the new ones are built
            self._prompts.extend(texts)
            if self._item_tokens is not None:
                self._item_tokens += [self._prompts.item_tokens(i) for i in range(first, self.n_items)]
        self.item_outputs = None
        return np.arange(first, self.n_items)

    # ------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[dict | None]]:
        """``(config, tensors, texts)``: JSON-safe description, the trained tensors, the item texts."""
        aligner = self.aligner
        config = {"llm": self.llm_identity, "llm_spec": dataclasses.asdict(aligner.user_prefix.spec),
                  "aligner": {"user": tower_config(aligner.user_prefix.config),
                              "item": tower_config(aligner.item_prefix.config),
                              "output_heads": aligner.heads is not None,
                              "output_head_hidden": 0 if aligner.heads is None else aligner.heads.hidden,
                              "output_head_pool": aligner.heads is not None and aligner.heads.pools}}
        tensors = {f"aligner.{k}": v.detach().cpu().contiguous() for k, v in aligner.state_dict().items()
                   if not (k.endswith("input_scale") and bool((v == 1).all()))}  # saved only when balanced
        if self.item_basis is not None:
            tensors["item_basis"] = self.item_basis.contiguous()
        if self.cf_user_vectors is not None:
            tensors["cf_user_vectors"] = self.cf_user_vectors.contiguous()
        if self.factors is not None:
            tensors["cooccurrence.history_side"] = self.factors.history_side.contiguous()
            tensors["cooccurrence.item_side"] = self.factors.item_side.contiguous()
        if self.text_factors is not None:
            tensors["text_factors.components"] = self.text_factors.components.contiguous()
            tensors["text_factors.scale"] = torch.tensor(self.text_factors.scale)
        texts = [None if t is None else {"title": t.title, "categories": list(t.categories)} for t in self.texts]
        return config, tensors, texts

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, torch.Tensor], texts: list[dict | None],
                   backbone: CFBackbone, prompts: PromptSettings, source: LLMSource) -> Towers:
        """Towers from :meth:`to_state`'s output (the LLM is loaded on first use).

        Reads every layout: format 10 (a tower's config may hold ``id_blocks``; absent: none), format 9 (a tower's
        config may name its ``pooling``; absent: the last token's), format 8
        (``aligner.*_prefix.input_scale`` tensors: the projectors' input scales, ones
        when absent), format 7 (``text_factors.*`` tensors: TF-IDF factors of the item texts appended after
        them), format 6 (``cooccurrence.*`` tensors: EASE factors appended to the ID vectors),
        format 5 (``aligner.output_head_pool``: the user
        head pools the history's item vectors, kept as ``item_basis``), format 4 (``aligner.output_head_hidden``: the
        heads' MLP width), format 3 (``aligner.output_heads`` says whether
        output heads were trained), format 2 (``llm_spec`` is the LLM's, each
        tower config has its prefix ``depth``) and format 1 (``llm_spec.n_layers``
        was the prefix depth). Raises ``KeyError``/``TypeError``/``ValueError``
        on a malformed config, :class:`ModelFormatError` on weights that do not fit it.
        """
        spec = LLMSpec(**config["llm_spec"])
        towers = {}
        for name in ("user", "item"):
            fields = dict(config["aligner"][name])
            if fields.pop("output_head", False):
                raise ModelFormatError("this model was fitted with output_head=True, an option since removed from "
                                       "rarec; load it with the rarec version that wrote it.")
            fields.setdefault("depth", spec.n_layers)  # format 1
            towers[name] = PrefixProjector(spec, PrefixConfig(**fields))
        heads = None
        if config["aligner"].get("output_heads", False):  # format 3; the MLP's width since format 4
            heads = OutputHeads(spec.hidden_size, config["aligner"].get("output_head_hidden", 0),
                                pool=config["aligner"].get("output_head_pool", False))  # format 5
        aligner = TwoTowerAligner(towers["user"], towers["item"], heads)
        try:
            aligner.load_state_dict({k.removeprefix("aligner."): v for k, v in tensors.items()
                                     if k.startswith("aligner.")})
        except (RuntimeError, ValueError) as exc:
            raise ModelFormatError(f"the alignment weights do not fit the saved configuration ({exc}).") from None
        item_texts = [None if t is None else ItemText(t["title"], tuple(t.get("categories", ()))) for t in texts]
        if heads is not None and heads.pools and "item_basis" not in tensors:
            raise ModelFormatError("the output heads pool the history's item vectors, but item_basis is missing.")
        factors = None
        if "cooccurrence.item_side" in tensors:  # format 6
            factors = CooccurrenceFactors(tensors["cooccurrence.history_side"], tensors["cooccurrence.item_side"])
            if factors.history_side.shape[0] != backbone.n_items_:
                raise ModelFormatError(f"the co-occurrence factors cover {factors.history_side.shape[0]} items; the "
                                       f"CF backbone knows {backbone.n_items_}.")
        text_factors = None
        if "text_factors.components" in tensors:  # format 7
            try:
                text_factors = TextFactors(tensors["text_factors.components"], item_texts[:backbone.n_items_],
                                           float(tensors["text_factors.scale"]))
            except (KeyError, ValueError) as exc:
                raise ModelFormatError(f"the text factors do not fit the saved item texts ({exc}).") from None
        towers = cls(backbone, item_texts, prompts, source, aligner.to(source.device).eval(),
                     llm_identity=config["llm"], factors=factors, text_factors=text_factors)
        towers.item_basis = tensors.get("item_basis") if heads is not None and heads.pools else None
        return towers

    def __getstate__(self) -> dict:
        # Pickles never carry the frozen LLM: it is reloaded (and checked) on first use.
        state = dict(self.__dict__)
        state.update(_llm=None, _prompts=None, _item_tokens=None, item_states=None, item_outputs=None,
                     _neighbours=None)
        return state

    def __deepcopy__(self, memo: dict) -> Towers:
        # The LLM is frozen: copies share it (and an in-memory model given as the source) instead of duplicating it.
        for shared in (self._llm, self.source.llm):
            if shared is not None and not isinstance(shared, str | os.PathLike):
                memo[id(shared)] = shared
                for part in (shared if isinstance(shared, tuple | list) else (shared.model, shared.tokenizer)):
                    memo[id(part)] = part
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


def tower_config(config: PrefixConfig) -> dict[str, Any]:
    """A tower's prefix settings as saved: ``pooling`` only when it is not the last token's (format 9) and
    ``id_blocks`` only when set (format 10), so that a model built as the paper's is written as older readers
    expect it."""
    fields = dataclasses.asdict(config)
    if fields["pooling"] == "last":
        del fields["pooling"]
    if fields["id_blocks"] is None:
        del fields["id_blocks"]
    else:
        fields["id_blocks"] = list(fields["id_blocks"])
    return fields


def pick(states: Sequence[torch.Tensor] | None, rows: Any) -> list[torch.Tensor] | None:
    """``states[r]`` for each row, or ``None`` when nothing is cached."""
    return None if states is None else [states[int(r)] for r in rows]


def length_sorted_batches(tokens: Sequence[Sequence[int]], size: int) -> list[np.ndarray]:
    """Indices of ``tokens`` in batches of ``size``, shortest prompts first (least padding)."""
    order = np.argsort([len(t) for t in tokens], kind="stable")
    return [order[begin:begin + size] for begin in range(0, len(order), size)]
