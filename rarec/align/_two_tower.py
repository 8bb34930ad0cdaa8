"""Two towers over one frozen LLM: a user prefix and an item prefix, same weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..llm import FrozenLLM
from ._projector import PrefixProjector


class OutputHeads(nn.Module):
    """A linear map (hidden -> hidden) on each tower's output vector, starting as the identity, optionally
    followed by a residual MLP whose last layer starts at zero (so a new head is always the identity).

    The user maps have biases (they add an item-dependent term to the
    scores); the item maps' output has none: a bias there would add the
    same amount to all of a user's scores, which changes no ranking and no
    softmax, so its gradient is zero and Adam would only amplify rounding
    noise into it.

    Not in the paper: the frozen LLM's final-norm outputs are strongly
    anisotropic, and a prefix alone reshapes them only so far; a map
    trained after the prefixes, on their fixed vectors, brings the towers
    close to their backbone's ranking (docs/benchmarks.md, "A linear head on
    the towers' output").

    Parameters
    ----------
    width : int
        The LLM's hidden size.
    hidden : int, default 0
        Hidden units of the residual MLP (``x + W2 GELU(W1 x + b1)`` after
        the linear map); 0 keeps the heads linear.
    generator : torch.Generator, optional
        Draws the MLP's first layer (uniform in ±1/√width, as ``nn.Linear``
        draws it), so that a seeded fit is reproducible.
    pool : bool, default False
        The user head also adds a linear map (zero at the start) of a second
        input: the mean of the LLM's item vectors (before the heads) over the
        user's whole history, which the prompt (a few titles) and the CF
        vector (the last ``max_history`` items) only summarise.
    """

    def __init__(self, width: int, hidden: int = 0, generator: torch.Generator | None = None,
                 pool: bool = False) -> None:
        super().__init__()
        self.hidden = hidden
        self.user_pool = None
        if pool:
            self.user_pool = nn.Linear(width, width, bias=False)
            nn.init.zeros_(self.user_pool.weight)
        self.user, self.item = nn.Linear(width, width), nn.Linear(width, width, bias=False)
        with torch.no_grad():
            for layer in (self.user, self.item):
                layer.weight.copy_(torch.eye(width))
            self.user.bias.zero_()
        self.user_mlp = self.item_mlp = None
        if hidden:
            self.user_mlp, self.item_mlp = (
                nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width, bias=bias))
                for bias in (True, False))
            bound = width ** -0.5
            with torch.no_grad():
                for mlp in (self.user_mlp, self.item_mlp):
                    nn.init.uniform_(mlp[0].weight, -bound, bound, generator=generator)
                    nn.init.uniform_(mlp[0].bias, -bound, bound, generator=generator)
                    nn.init.zeros_(mlp[2].weight)
                nn.init.zeros_(self.user_mlp[2].bias)

    @property
    def pools(self) -> bool:
        """Whether the user head reads the history's mean item vector (``pool``)."""
        return self.user_pool is not None

    def forward(self, tower: str, vectors: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """``vectors`` (B, hidden) of ``"user"`` or ``"item"`` through that tower's head, in float32; ``pooled``
        (B, hidden): the users' mean history item vectors, needed when the user head pools."""
        linear, mlp = (self.user, self.user_mlp) if tower == "user" else (self.item, self.item_mlp)
        vectors = linear(vectors.float())
        if tower == "user" and self.user_pool is not None:
            if pooled is None:
                raise ValueError("these output heads pool the history's item vectors: pass them as pooled.")
            vectors = vectors + self.user_pool(pooled.to(vectors))
        return vectors if mlp is None else vectors + mlp(vectors)


class TwoTowerAligner(nn.Module):
    """The trainable alignment module of both towers.

    The frozen LLM is held outside the module's parameters (it is never
    trained, and never saved with the module).

    Parameters
    ----------
    user_prefix, item_prefix : PrefixProjector
    heads : OutputHeads, optional
        Maps of both towers' outputs (none: the LLM's output is the vector).
    """

    def __init__(self, user_prefix: PrefixProjector, item_prefix: PrefixProjector,
                 heads: OutputHeads | None = None) -> None:
        super().__init__()
        self.user_prefix = user_prefix
        self.item_prefix = item_prefix
        self.heads = heads

    def encode(self, llm: FrozenLLM, tower: str, id_embeddings: torch.Tensor, tokens: Sequence[Sequence[int]],
               lower_states: Sequence[torch.Tensor] | None = None, pooled: torch.Tensor | None = None,
               heads: bool = True) -> torch.Tensor:
        """Vectors (B, hidden) of one tower for CF embeddings (B, K, d) and prompt tokens (through the
        output heads when there are any).

        The CF embeddings may sit on any device: they are moved to the module's.

        When the prefixes cover only the top layers (:attr:`start` > 0), the
        lower layers run without a prefix; their output may be passed in as
        ``lower_states`` (see :meth:`FrozenLLM.lower_states`) to skip them.
        ``pooled``: the users' mean history item vectors, for heads that pool;
        ``heads=False`` gives the LLM's outputs before the heads.
        """
        projector = self.tower(tower)
        if projector.config.use_id:
            id_embeddings = id_embeddings.to(next(projector.parameters()).device)
        prefix = projector(id_embeddings if projector.config.use_id else None, batch_size=len(tokens))
        vectors = llm.forward(tokens, prefix, start=self.start(llm), lower_states=lower_states,
                              pooling=projector.config.pooling)
        return self.through_heads(tower, vectors, pooled) if heads else vectors

    def through_heads(self, tower: str, vectors: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """One tower's LLM outputs (B, hidden) through its output head, or unchanged when there are no heads."""
        return vectors if self.heads is None else self.heads(tower, vectors, pooled)

    def tower(self, name: str) -> PrefixProjector:
        """The prefix projector of ``"user"`` or ``"item"``."""
        return self.user_prefix if name == "user" else self.item_prefix

    def start(self, llm: FrozenLLM) -> int:
        """The first LLM layer that gets a prefix: the prefixes cover the top layers."""
        start = llm.spec.n_layers - self.user_prefix.n_layers
        if start < 0:
            raise ValueError(f"the alignment module has prefixes for {self.user_prefix.n_layers} layers, "
                             f"but the LLM has only {llm.spec.n_layers}; load it with the LLM it was trained with.")
        return start

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load trained weights, refusing with a clear message weights made for another LLM or setting."""
        own = self.state_dict()
        # the projectors' input scales are saved only when set (balance_id_blocks): absent, they are ones
        state_dict = {**{k: torch.ones_like(v) for k, v in own.items() if k.endswith("input_scale")}, **state_dict}
        spec = self.user_prefix.spec
        for name, tensor in state_dict.items():
            if name in own and tuple(own[name].shape) != tuple(tensor.shape):
                raise ValueError(
                    f"alignment tensor {name!r} has shape {tuple(tensor.shape)}, but the loaded LLM "
                    f"({self.user_prefix.n_layers} prefixed layers, {spec.n_kv_heads} KV heads x {spec.head_dim}, hidden {spec.hidden_size}) "
                    f"and these settings need {tuple(own[name].shape)}: the module was trained with a different "
                    "LLM or prefix configuration. Load it with the LLM it was trained with."
                )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
