"""The transformers-version seam: the cache argument is read off the model, never guessed."""

import pytest
import torch

from rarec.llm import FrozenLLM
from rarec.llm._compat import cache_argument, cache_kwargs
from rarec.testing import FAMILIES, tiny_llm


class _OldStyle(torch.nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return input_ids


class _NewStyle(torch.nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
        return input_ids


class _NoCache(torch.nn.Module):
    def forward(self, input_ids=None, **kwargs):  # would swallow any cache silently
        return input_ids


def test_the_cache_argument_is_read_from_the_forward_signature():
    assert cache_argument(_OldStyle) == "past_key_values"
    assert cache_argument(_NewStyle) == "cache"
    assert cache_kwargs(_NewStyle(), None) == {}
    assert cache_kwargs(_OldStyle(), "c") == {"past_key_values": "c", "use_cache": True}
    with pytest.raises(TypeError, match="_NoCache.forward takes no 'cache' or 'past_key_values'"):
        cache_argument(_NoCache)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_prefix_changes_the_vector_in_the_installed_transformers(family):
    """Guards against a cache passed under a name the model ignores (it takes **kwargs)."""
    llm = FrozenLLM.load(tiny_llm(None, family=family), device="cpu")
    spec = llm.spec
    prefix = [tuple(torch.randn(1, spec.n_kv_heads, 2, spec.head_dim, requires_grad=True) for _ in range(2))
              for _ in range(spec.n_layers)]
    with_prefix = llm.forward([[4, 5, 6]], prefix)
    assert not torch.allclose(with_prefix, llm.forward([[4, 5, 6]]), atol=1e-4)
    with_prefix.square().sum().backward()  # a plain sum is constant under a final LayerNorm
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for pair in prefix for t in pair)
