"""The one place that knows which transformers version is installed.

transformers 5 renamed the forward argument ``past_key_values=`` to
``cache=`` and ``torch_dtype=`` to ``dtype=``. Everything else in rarec calls
these helpers instead of checking versions itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import transformers
from transformers import DynamicCache

TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

#: Name of the forward argument that takes a cache object.
CACHE_ARG = "cache" if TRANSFORMERS_MAJOR >= 5 else "past_key_values"
#: Name of the ``from_pretrained`` argument that sets the dtype.
DTYPE_ARG = "dtype" if TRANSFORMERS_MAJOR >= 5 else "torch_dtype"


def prefix_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A fresh cache holding one (keys, values) pair per layer, each (B, H_kv, P, D).

    A new object for every forward: a ``DynamicCache`` is extended in place by
    the forward pass. ``torch.cat`` inside the cache keeps gradients flowing
    back to the prefix tensors.
    """
    return DynamicCache(ddp_cache_data=[(k, v) for k, v in layers])


def cache_kwargs(cache: DynamicCache | None) -> dict[str, object]:
    """``{CACHE_ARG: cache}`` for a model's forward (empty without a cache)."""
    return {} if cache is None else {CACHE_ARG: cache, "use_cache": True}


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
