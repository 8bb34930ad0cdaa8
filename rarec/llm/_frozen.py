"""The frozen LLM: dimensions from its config, and a forward pass with key/value prefixes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._device import resolve_device, warn_if_slow_on_cpu
from ._compat import cache_kwargs, cache_layers, output_cache, prefix_cache, skip_lower_layers
from ._loading import load_pretrained

KV = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LLMSpec:
    """What the alignment module needs to know about the LLM.

    Attributes
    ----------
    n_layers : int
        Decoder layers.
    n_kv_heads : int
        Key/value heads (fewer than query heads under grouped-query attention).
    head_dim : int
        Size of one head.
    hidden_size : int
        Width of the hidden states (the size of a user or item vector).
    """

    n_layers: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int

    @property
    def kv_dim(self) -> int:
        """``head_dim * n_kv_heads``: the width of one layer's keys (or values)."""
        return self.head_dim * self.n_kv_heads

    @classmethod
    def from_config(cls, config: Any) -> LLMSpec:
        """Read the dimensions from a transformers config (Llama, Qwen2, Mistral, GPT-2, ...)."""
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        hidden = int(config.hidden_size)
        n_heads = int(config.num_attention_heads)
        n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
        head_dim = int(getattr(config, "head_dim", None) or hidden // n_heads)
        return cls(int(config.num_hidden_layers), n_kv, head_dim, hidden)


class FrozenLLM:
    """A causal LM's decoder, frozen, that encodes token sequences into one vector each.

    Parameters
    ----------
    model : transformers model
        A decoder (``LlamaModel``, ``GPT2Model``, ...) or a causal LM, whose
        base model is used (the LM head is never needed).
    tokenizer : transformers tokenizer
    identity : dict, optional
        Where the model came from (recorded when a recommender is saved).

    Notes
    -----
    Every parameter gets ``requires_grad=False`` and the model stays in eval
    mode. The vector of a sequence is the final-layer hidden state of its last
    real token, after the model's final norm (or the mean over its tokens:
    :meth:`forward`'s ``pooling``).
    """

    def __init__(self, model: Any, tokenizer: Any, identity: dict | None = None) -> None:
        model.eval()
        for param in model.parameters():  # the LM head too, though only the decoder is used
            param.requires_grad_(False)
        base = getattr(model, "base_model", model)
        self.model = base
        self.tokenizer = tokenizer
        self.spec = LLMSpec.from_config(base.config)
        self.identity = dict(identity or {"source": "object", "kind": type(base).__name__})
        self.identity["config_sha256"] = config_fingerprint(base.config)
        self.identity["weights_sha256"] = weights_fingerprint(base)

    @classmethod
    def load(cls, llm: Any = None, device: str | torch.device = "auto", dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, verbose: bool = True) -> FrozenLLM:
        """Load the default model (``llm=None``), a hub id, a folder, a ``.gguf`` file, or wrap a
        ``(model, tokenizer)`` pair. Loaded weights are fp32 on CPU, bf16 on CUDA, unless ``dtype`` is
        given; a pair keeps its own dtype unless ``dtype`` is given (then it is cast in place)."""
        device = resolve_device(device)
        if isinstance(llm, tuple | list):
            if len(llm) != 2:
                raise TypeError("llm as a pair must be (model, tokenizer).")
            model, tokenizer = llm
            frozen = cls(model, tokenizer)
            if dtype is not None:
                frozen.model.to(dtype)
        else:
            if dtype is None:
                dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
            model, tokenizer, identity = load_pretrained(llm, dtype, trust_remote_code, verbose)
            frozen = cls(model, tokenizer, identity)
        warn_if_slow_on_cpu(frozen.dtype, device)
        frozen.model.to(device)
        return frozen

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def _pad(self, token_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids (B, T) and the mask of real tokens (B, T)."""
        device = self.device
        lengths = torch.tensor([len(t) for t in token_ids], device=device)
        if int(lengths.min()) < 1:
            raise ValueError("every prompt must have at least one token.")
        width = int(lengths.max())
        ids = torch.full((len(token_ids), width), self.pad_id(), dtype=torch.long, device=device)
        for row, tokens in enumerate(token_ids):
            ids[row, width - len(tokens):] = torch.as_tensor(list(tokens), dtype=torch.long, device=device)
        real = torch.arange(width, device=device)[None, :] >= (width - lengths)[:, None]  # (B, T)
        return ids, real

    def forward(self, token_ids: Sequence[Sequence[int]], prefix: KV | None = None, start: int = 0,
                lower_states: Sequence[torch.Tensor] | None = None, pooling: str = "last") -> torch.Tensor:
        """Vectors (B, hidden_size) of token sequences, each behind its own prefix.

        Parameters
        ----------
        token_ids : sequence of int sequences
            Real tokens, any lengths; they are left-padded here.
        prefix : list of (keys, values), optional
            Per prefixed layer, each (B, H_kv, P, D): the prefix every sequence
            attends to in layers ``start .. n_layers-1``.
        start : int, default 0
            First layer with a prefix. Layers below it see no prefix, so their
            output for a prompt never changes: it can be computed once
            (:meth:`lower_states`) and passed in as ``lower_states``; then the
            lower layers are not run at all.
        lower_states : sequence of Tensor (T_i, hidden), optional
            The input of layer ``start`` for each prompt, from :meth:`lower_states`
            (computed here when not given).
        pooling : {"last", "mean"}, default "last"
            The vector of a sequence: the final hidden state of its last real
            token, or the mean of its real tokens' final hidden states.

        Positions: real tokens take positions ``P .. P+T-1`` whatever the padding,
        so a left-padded sequence gives the same vector as the same sequence alone.
        """
        if not 0 <= start < self.spec.n_layers:
            raise ValueError(f"start must be in 0..{self.spec.n_layers - 1}; got {start}.")
        ids, real = self._pad(token_ids)
        batch, device = len(token_ids), self.device
        n_prefix = 0 if prefix is None else prefix[0][0].shape[2]
        positions = (n_prefix + real.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        mask = torch.cat([torch.ones(batch, n_prefix, device=device, dtype=torch.long), real.long()], 1)
        layers = None if prefix is None else [(k.to(self.dtype), v.to(self.dtype)) for k, v in prefix]
        if start == 0:
            cache = None if layers is None else prefix_cache(layers)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             **cache_kwargs(self.model, cache))
            return pooled(out.last_hidden_state, real, pooling)  # (B, hidden)
        if layers is None or len(layers) != self.spec.n_layers - start:
            raise ValueError(f"with start={start} the prefix must cover the top {self.spec.n_layers - start} layers.")
        if lower_states is None:
            lower_states = self.lower_states(token_ids, start, n_prefix)
        states = torch.zeros(batch, ids.shape[1], self.spec.hidden_size, device=device, dtype=self.dtype)
        for row, state in enumerate(lower_states):
            states[row, ids.shape[1] - state.shape[0]:] = state.to(device, self.dtype)
        filler = torch.zeros_like(layers[0][0])  # lower layers never run; the cache only needs their slots
        cache = prefix_cache([(filler, filler)] * start + layers)
        with skip_lower_layers(self.model, start, states):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             **cache_kwargs(self.model, cache))
        return pooled(out.last_hidden_state, real, pooling)

    @torch.no_grad()
    def lower_states(self, token_ids: Sequence[Sequence[int]], start: int, n_prefix: int) -> list[torch.Tensor]:
        """The input of layer ``start`` for each prompt run without any prefix: a list of (T_i, hidden).

        Positions are ``n_prefix .. n_prefix+T-1``, as in :meth:`forward` with a
        prefix of ``n_prefix`` tokens in the layers above, so the states can be
        cached and reused for every training step.
        """
        return self.prompt_states(token_ids, start, n_prefix)[0]

    @torch.no_grad()
    def prompt_states(self, token_ids: Sequence[Sequence[int]], start: int, n_prefix: int, states: bool = True,
                      keys_values: bool = False) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
        """One forward pass (no prefix, no gradient) for what training computes once per prompt.

        Returns ``(lower, kv)``: ``lower`` as in :meth:`lower_states` (when
        ``states``), and ``kv`` the mean keys and values of the real tokens per
        layer, (B, L, 2, kv_dim) in fp32 (when ``keys_values``): the text-only
        representation the alignment loss compares ID prefixes with, taken at
        the positions the prompt has behind a prefix of ``n_prefix`` tokens.
        """
        ids, real = self._pad(token_ids)
        positions = (n_prefix + real.long().cumsum(1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=real.long(), position_ids=positions,
                         output_hidden_states=states, use_cache=keys_values)
        lower = kv = None
        if states:
            hidden = out.hidden_states[start]  # (B, T, hidden): the input of layer `start`
            lower = [hidden[row, hidden.shape[1] - n:] for row, n in enumerate(real.sum(1).tolist())]
        if keys_values:
            kv = _mean_keys_values(output_cache(out), real.to(self.dtype))
        return lower, kv


def _mean_keys_values(cache: Any, real: torch.Tensor) -> torch.Tensor:
    """Per layer, the mean key and value over the real tokens (``real``: (B, T) of 0/1): (B, L, 2, kv) fp32."""
    weights = (real / real.sum(1, keepdim=True))[:, None, :, None]  # (B, 1, T, 1)
    per_layer = []
    for keys, values in cache_layers(cache):  # each (B, H, T, D)
        k = (keys * weights).sum(2).flatten(1)  # (B, H*D)
        v = (values * weights).sum(2).flatten(1)
        per_layer.append(torch.stack([k, v], 1))  # (B, 2, kv)
    return torch.stack(per_layer, 1).float()  # (B, L, 2, kv)


def config_fingerprint(config: Any) -> str:
    """A short digest of the model config's architecture fields, to recognise the same LLM later."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    keep = {k: v for k, v in data.items() if not k.startswith("_") and k not in ("transformers_version", "dtype", "torch_dtype")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_fingerprint(model: Any, n_values: int = 65536) -> str:
    """A short digest of a sample of the weights (first and last tensors), to tell checkpoints apart.

    Values are rounded to bfloat16 first, so the same weights held in fp32 or
    bf16 (CPU or CUDA) give the same digest.
    """
    params = list(model.parameters())
    digest = hashlib.sha256()
    for param in (params[0], params[-1]) if params else ():
        sample = param.detach().reshape(-1)[:n_values].to("cpu", torch.bfloat16).float()
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


#: How a sequence's final hidden states become its vector (:meth:`FrozenLLM.forward`'s ``pooling``).
POOLINGS = ("last", "mean")


def pooled(hidden: torch.Tensor, real: torch.Tensor, pooling: str) -> torch.Tensor:
    """Vectors (B, hidden) of left-padded final states (B, T, hidden): the last real token's (``"last"``) or the
    mean over the real tokens (``"mean"``; ``real`` is the (B, T) mask of real tokens)."""
    if pooling == "last":
        return hidden[:, -1]
    if pooling == "mean":
        weights = real.to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1)
    raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}.")
