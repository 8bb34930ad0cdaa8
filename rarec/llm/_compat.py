"""The one place that knows which transformers version is installed.

transformers renamed the forward argument ``past_key_values=`` to ``cache=``
(during the 5.x series: 5.17 still takes ``past_key_values``, 5.24 takes
``cache``) and ``torch_dtype=`` to ``dtype=`` (5.0). A model's forward takes
unknown keyword arguments silently, so a cache passed under the wrong name
would be ignored without an error: the argument's name is read from the
model's own forward signature, never guessed from a version number.
Everything else in rarec calls these helpers instead of checking versions
itself.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import transformers
from transformers import DynamicCache

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

#: Name of the ``from_pretrained`` argument that sets the dtype.
DTYPE_ARG = "dtype" if TRANSFORMERS_MAJOR >= 5 else "torch_dtype"


def prefix_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A fresh cache holding one (keys, values) pair per layer, each (B, H_kv, P, D).

    A new object for every forward: a ``DynamicCache`` is extended in place by
    the forward pass. ``torch.cat`` inside the cache keeps gradients flowing
    back to the prefix tensors.
    """
    return DynamicCache(ddp_cache_data=[(k, v) for k, v in layers])


@functools.lru_cache(maxsize=None)
def cache_argument(model_class: type) -> str:
    """Name of the argument of ``model_class.forward`` that takes a cache object.

    Raises
    ------
    TypeError
        When the forward takes neither ``cache`` nor ``past_key_values``: such a
        model cannot be given a prefix.
    """
    parameters = inspect.signature(model_class.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise TypeError(f"{model_class.__name__}.forward takes no 'cache' or 'past_key_values' argument, so rarec "
                    "cannot give it a key/value prefix.")


def cache_kwargs(model: torch.nn.Module, cache: DynamicCache | None) -> dict[str, object]:
    """``{name: cache, "use_cache": True}`` for ``model``'s forward (empty without a cache)."""
    return {} if cache is None else {cache_argument(type(model)): cache, "use_cache": True}


def dtype_kwargs(dtype: torch.dtype) -> dict[str, object]:
    """``{DTYPE_ARG: dtype}`` for ``from_pretrained``."""
    return {DTYPE_ARG: dtype}


def output_cache(outputs: object) -> DynamicCache | None:
    """The cache a forward returned (``cache`` in transformers 5, ``past_key_values`` before)."""
    for name in ("cache", "past_key_values"):
        cache = getattr(outputs, name, None)
        if cache is not None:
            return cache
    return None


def cache_layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, each (B, H_kv, T, D)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in zip(cache.key_cache, cache.value_cache)]  # transformers 4.x


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The list of decoder layers of a base model (``layers`` in Llama/Qwen2/Mistral, ``h`` in GPT-2)."""
    n_layers = model.config.get_text_config().num_hidden_layers
    for name in ("layers", "h", "blocks"):
        layers = getattr(model, name, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == n_layers:
            return layers
    raise TypeError(f"cannot find the decoder layers of {type(model).__name__}; use prefix_layers='all'.")


class _SkippedLayer(torch.nn.Module):
    """Stands in for a decoder layer that must not run: returns its input unchanged.

    Keeps the layer's ``attention_type``, which some models' forward reads off
    each layer to pick its mask.
    """

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        if hasattr(layer, "attention_type"):
            self.attention_type = layer.attention_type

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object):
        return hidden_states if TRANSFORMERS_MAJOR >= 5 else (hidden_states,)


@contextmanager
def skip_lower_layers(model: torch.nn.Module, start: int, states: torch.Tensor) -> Iterator[None]:
    """Run only layers ``start..`` of ``model``, with ``states`` (B, T, hidden) as the input of layer ``start``.

    The model's own forward still builds the mask, the positions and the
    rotary embeddings; the lower layers are swapped for pass-throughs and a
    hook replaces the input of layer ``start``. Everything is restored on exit.
    """
    layers = decoder_layers(model)
    originals = list(layers)

    def replace_input(module, args, kwargs):
        if args:
            return (states, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": states}

    for i in range(start):
        layers[i] = _SkippedLayer(originals[i])
    handle = originals[start].register_forward_pre_hook(replace_input, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for i in range(start):
            layers[i] = originals[i]
