"""The alignment module: ID embeddings and learned instructions -> per-layer key/value prefixes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._validation import check_int, check_option
from ..llm import POOLINGS, LLMSpec

KV = list[tuple[torch.Tensor, torch.Tensor]]
REPARAMETERIZATIONS = ("layer", "shared", "low_rank")


@dataclass
class PrefixConfig:
    """Shape of one tower's prefix.

    Attributes
    ----------
    id_dim : int
        Width of the CF embeddings fed in.
    n_interests : int
        ID vectors per user or item (K); each becomes ``n_id_tokens`` prefix tokens
        (per block with ``id_blocks``).
    n_id_tokens : int
        Prefix tokens made from each ID vector.
    n_ctx : int
        Learnable contextual-instruction tokens per layer (0 = none).
    reparameterization : {"layer", "shared", "low_rank"}
        ``"layer"``: one linear map per layer (the paper); ``"shared"``: one map
        for all layers (ablation); ``"low_rank"``: a shared down-projection to
        ``rank`` and a per-layer up-projection (far fewer parameters).
    rank : int
        Width of the low-rank bottleneck.
    use_id : bool
        ``False`` drops the ID tokens: plain prefix tuning (ablation).
    init_std : float
        Standard deviation of the initial key weights; value weights start at
        zero, so an untrained prefix adds nothing to any attention output.
    depth : int or None
        Top LLM layers that get a prefix (``None``: every layer). The layers
        below see the plain prompt (their output can be cached).
    pooling : {"last", "mean"}
        The tower's vector: the LLM's final state of the prompt's last token
        (the paper's), or the mean of every prompt token's final state (a
        research setting, :meth:`FrozenLLM.forward`).
    id_blocks : tuple of int or None
        Widths of the ID vector's blocks, in column order and summing to
        ``id_dim`` (the backbone's embedding, then any factor sets:
        :meth:`Towers.id_block_widths`). When given, each block gets its own
        ``n_id_tokens`` tokens, made from that block's columns only (a
        block-diagonal map); ``None`` (the paper's) makes every ID token from
        the whole vector. A research setting (session 59); not with
        ``reparameterization="low_rank"``.
    """

    id_dim: int
    n_interests: int = 1
    n_id_tokens: int = 1
    n_ctx: int = 4
    reparameterization: str = "layer"
    rank: int = 16
    use_id: bool = True
    init_std: float = 0.02
    depth: int | None = None
    pooling: str = "last"
    id_blocks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("id_dim", "n_interests", "n_id_tokens", "rank"):
            check_int(getattr(self, name), name, "PrefixConfig", 1)
        check_int(self.n_ctx, "n_ctx", "PrefixConfig", 0)
        if self.depth is not None:
            check_int(self.depth, "depth", "PrefixConfig", 1)
        check_option(self.reparameterization, "reparameterization", "PrefixConfig", REPARAMETERIZATIONS)
        check_option(self.pooling, "pooling", "PrefixConfig", POOLINGS)
        if self.id_blocks is not None:
            self.id_blocks = tuple(self.id_blocks)  # a saved model's config holds a list
            if not self.id_blocks:
                raise ValueError("PrefixConfig: id_blocks must name at least one block (or be None).")
            for width in self.id_blocks:
                check_int(width, "each of id_blocks", "PrefixConfig", 1)
            if self.reparameterization == "low_rank":
                raise ValueError("PrefixConfig: id_blocks (one map per block) does not combine with "
                                 "reparameterization='low_rank', whose shared down-projection mixes the blocks.")
        if not self.use_id and self.n_ctx == 0:
            raise ValueError("a prefix with neither ID tokens (use_id=False) nor instructions (n_ctx=0) is empty.")

    @property
    def n_blocks(self) -> int:
        """Blocks of the ID vector that get tokens of their own (1: the whole vector)."""
        return 1 if self.id_blocks is None else len(self.id_blocks)

    @property
    def tokens_per_vector(self) -> int:
        """Prefix tokens made from each ID vector."""
        return self.n_blocks * self.n_id_tokens

    @property
    def n_id_total(self) -> int:
        """ID tokens in the prefix."""
        return self.n_interests * self.tokens_per_vector if self.use_id else 0

    @property
    def length(self) -> int:
        """Prefix tokens per layer: instructions first, then ID tokens."""
        return self.n_ctx + self.n_id_total


class PrefixProjector(nn.Module):
    """One tower's prefix: ``d^l = [c^l || W^l e + b^l]`` as keys and values of every layer.

    Following prefix tuning, the keys and values are produced directly (a
    learned linear map composed with the frozen key/value projections is still
    a linear map), so it works for any decoder and RoPE never touches the prefix.

    Parameters
    ----------
    spec : LLMSpec
        Layers, KV heads and head size of the frozen LLM.
    config : PrefixConfig
    generator : torch.Generator, optional
        Draws the initial weights (the global generator when absent).
    """

    def __init__(self, spec: LLMSpec, config: PrefixConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.spec, self.config = spec, config
        self.n_layers = n_layers = spec.n_layers if config.depth is None else min(config.depth, spec.n_layers)
        kv = spec.kv_dim
        out = config.tokens_per_vector * 2 * kv  # one vector -> (blocks x n_id_tokens) x (key, value)
        if config.n_ctx:
            ctx = torch.zeros(n_layers, config.n_ctx, 2, kv)  # (L, C, 2, kv)
            ctx[:, :, 0].normal_(0.0, config.init_std, generator=generator)  # keys small, values zero
            self.context = nn.Parameter(ctx)
        if config.use_id:
            maps = 1 if config.reparameterization == "shared" else n_layers
            if config.reparameterization == "low_rank":
                self.down = nn.Linear(config.id_dim, config.rank)
                if generator is not None:  # nn.Linear's own initialisation, drawn from the generator
                    bound = config.id_dim ** -0.5
                    with torch.no_grad():
                        self.down.weight.uniform_(-bound, bound, generator=generator)
                        self.down.bias.uniform_(-bound, bound, generator=generator)
                self.weight = nn.Parameter(self._init_weight(maps, config.rank, out, generator))  # (L, r, out)
            else:
                self.weight = nn.Parameter(self._init_weight(maps, config.id_dim, out, generator))  # (L or 1, d, out)
            self.bias = nn.Parameter(torch.zeros(maps, out))  # (L or 1, out)
            #: a fixed factor on each input column (:func:`balanced_block_scales`; ones unless set before training)
            self.register_buffer("input_scale", torch.ones(config.id_dim))
            if config.id_blocks is not None:  # which input columns each output may read; derived, so not saved
                self.register_buffer("block_mask", block_diagonal_mask(config, kv), persistent=False)
                with torch.no_grad():
                    self.weight.mul_(self.block_mask)

    def _init_weight(self, maps: int, fan_in: int, out: int, generator: torch.Generator | None) -> torch.Tensor:
        weight = torch.zeros(maps, fan_in, self.config.tokens_per_vector, 2, self.spec.kv_dim)
        weight[:, :, :, 0].normal_(0.0, self.config.init_std, generator=generator)  # key part; the value part stays 0
        return weight.reshape(maps, fan_in, out)

    def id_prefix(self, embeddings: torch.Tensor) -> torch.Tensor:
        """ID tokens of every prefixed layer: (B, L, K*n_id, 2, kv_dim) from embeddings (B, K, d)."""
        cfg, spec = self.config, self.spec
        if embeddings.ndim != 3 or embeddings.shape[1:] != (cfg.n_interests, cfg.id_dim):
            raise ValueError(
                f"ID embeddings must have shape (batch, {cfg.n_interests}, {cfg.id_dim}); got {tuple(embeddings.shape)}."
            )
        x = embeddings * self.input_scale.to(embeddings)
        x = self.down(x) if cfg.reparameterization == "low_rank" else x  # (B, K, d')
        weight = self.weight if cfg.id_blocks is None else self.weight * self.block_mask  # masked: no cross-block flow
        out = torch.einsum("bkd,ldo->blko", x, weight) + self.bias[None, :, None, :]  # (B, L|1, K, out)
        out = out.expand(-1, self.n_layers, -1, -1) if out.shape[1] == 1 else out  # shared map: same for all layers
        batch = embeddings.shape[0]
        return out.reshape(batch, self.n_layers, cfg.n_id_total, 2, spec.kv_dim)

    def forward(self, embeddings: torch.Tensor | None, batch_size: int | None = None) -> KV:
        """Per-layer (keys, values), each (B, H_kv, P, D).

        ``embeddings`` (B, K, d) may be ``None`` when ``use_id`` is off; then
        ``batch_size`` says how many copies of the instructions to make.
        """
        cfg, spec = self.config, self.spec
        parts = []
        batch = embeddings.shape[0] if embeddings is not None else batch_size
        if batch is None:
            raise ValueError("give embeddings or batch_size.")
        if cfg.n_ctx:
            parts.append(self.context[None].expand(batch, -1, -1, -1, -1))  # (B, L, C, 2, kv)
        if cfg.use_id:
            if embeddings is None:
                raise ValueError("this prefix uses ID embeddings; got None.")
            parts.append(self.id_prefix(embeddings))  # (B, L, K*n_id, 2, kv)
        prefix = torch.cat(parts, dim=2)  # (B, L, P, 2, kv)
        prefix = prefix.view(batch, self.n_layers, cfg.length, 2, spec.n_kv_heads, spec.head_dim)  # (B, L, P, 2, H, D)
        prefix = prefix.permute(1, 3, 0, 4, 2, 5)  # (L, 2, B, H, P, D)
        return [(layer[0], layer[1]) for layer in prefix]


def block_diagonal_mask(config: PrefixConfig, kv_dim: int) -> torch.Tensor:
    """(id_dim, out) ones where an output of the ID map may read an input column: the ``n_id_tokens`` tokens of
    block b (in order) read block b's columns of ``config.id_blocks`` only."""
    # checked here, not in PrefixConfig: a checkpoint's fingerprint reads the settings before id_dim is known
    if sum(config.id_blocks) != config.id_dim:
        raise ValueError(f"PrefixConfig: id_blocks {list(config.id_blocks)} add up to {sum(config.id_blocks)}, "
                         f"but the ID vectors have {config.id_dim} columns.")
    column_block = torch.repeat_interleave(torch.arange(config.n_blocks), torch.tensor(config.id_blocks))  # (d,)
    token_block = torch.arange(config.n_blocks).repeat_interleave(config.n_id_tokens)  # (blocks * n_id_tokens,)
    mask = (column_block[:, None] == token_block[None, :]).float()  # (d, tokens)
    return mask[:, :, None].expand(-1, -1, 2 * kv_dim).reshape(config.id_dim, -1)  # (d, tokens * 2 * kv)


def balanced_block_scales(vectors: torch.Tensor, widths: list[int], columns: bool = False) -> torch.Tensor:
    """A factor per column (d,) that gives each block of columns (``widths``, in order, summing to d) of
    ``vectors`` (n, ..., d) the same share of their total variance across rows, the total unchanged.

    The ID vectors join blocks of very different scales (the backbone's embedding, then factor sets scaled to their
    score weight); Adam moves every input weight at the same rate, so a block of small scale is learned slowest.
    A block without variance keeps the factor 1. ``columns``: inside each block every column also gets the same
    share (a factor set's trailing directions, whose variance falls with their singular values, then learn as fast
    as its leading ones); a column without variance keeps the factor 1, and its share is left out of the total."""
    flat = vectors.reshape(-1, vectors.shape[-1]).double()
    if sum(widths) != flat.shape[1]:
        raise ValueError(f"block widths {widths} do not add up to the vectors' width {flat.shape[1]}.")
    variance = flat.var(0) if len(flat) > 1 else torch.zeros(flat.shape[1], dtype=torch.float64)
    per_block = [part.sum() for part in variance.split(widths)]
    share = sum(per_block) / max(sum(1 for v in per_block if v > 0), 1)
    if columns:  # each column of a block of width w: share / w
        per_column = torch.cat([torch.full((w,), float(share / w), dtype=torch.float64) for w in widths])
        return torch.where(variance > 0, torch.sqrt(per_column / variance.clamp_min(1e-300)), 1.0).float()
    factors = [torch.sqrt(share / v) if v > 0 else torch.tensor(1.0, dtype=torch.float64) for v in per_block]
    return torch.cat([f.expand(w) for f, w in zip(factors, widths)]).float()


def alignment_loss(id_prefix: torch.Tensor, text_kv: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-layer InfoNCE between ID prefixes and text-only keys/values, in-batch negatives.

    Parameters
    ----------
    id_prefix : Tensor (B, L, P_id, 2, kv)
        The ID tokens of each layer (averaged over tokens here).
    text_kv : Tensor (B, L, 2, kv)
        Mean keys/values of the same users'/items' hard prompts, no gradient.
    temperature : float

    Returns
    -------
    Tensor
        The symmetric InfoNCE loss averaged over layers.
    """
    # in fp32 whatever the LLM's dtype: the softmax of the loss needs its range
    ids = nn.functional.normalize(id_prefix.float().mean(2).flatten(2), dim=-1)  # (B, L, 2kv)
    text = nn.functional.normalize(text_kv.float().flatten(2), dim=-1)  # (B, L, 2kv)
    logits = torch.einsum("bld,cld->lbc", ids, text) / temperature  # (L, B, B)
    labels = torch.arange(ids.shape[0], device=ids.device).expand(ids.shape[1], -1)  # (L, B)
    forward = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
    backward = nn.functional.cross_entropy(logits.transpose(1, 2).flatten(0, 1), labels.flatten())
    return (forward + backward) / 2
