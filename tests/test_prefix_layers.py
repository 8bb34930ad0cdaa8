"""Prefixes in the top layers only, with the lower layers' output cached (the efficient-tuning lever)."""

import numpy as np
import pytest
import torch

from rarec import RARecommender
from rarec.align import length_bucketed_batches
from rarec.data import make_interactions
from rarec.llm import FrozenLLM
from rarec.testing import FAMILIES, tiny_llm

TOKENS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]


def _llm(family):
    return FrozenLLM.load(tiny_llm(None, family=family, layers=4), device="cpu")


def _prefix(llm, start, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    spec = llm.spec
    return [tuple(torch.randn(len(TOKENS), spec.n_kv_heads, length, spec.head_dim, generator=gen).requires_grad_()
                  for _ in range(2)) for _ in range(spec.n_layers - start)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("start", [1, 2, 3])
def test_skipping_lower_layers_reproduces_the_full_model_exactly(family, start):
    llm = _llm(family)
    empty = [(torch.zeros(3, llm.spec.n_kv_heads, 0, llm.spec.head_dim),) * 2 for _ in range(llm.spec.n_layers - start)]
    assert torch.equal(llm.forward(TOKENS, empty, start=start), llm.forward(TOKENS))
    assert not any(type(m).__name__ == "_SkippedLayer" for m in llm.model.modules())  # layers restored


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_lower_states_give_the_same_vectors_and_gradients(family):
    llm = _llm(family)
    start, length = 2, 3
    prefix = _prefix(llm, start, length)
    params = [t for pair in prefix for t in pair]
    uncached = llm.forward(TOKENS, prefix, start=start)
    grads_uncached = torch.autograd.grad(uncached.square().sum(), params)
    # states computed once, in another batch composition (one prompt at a time)
    states = [llm.lower_states([t], start, length)[0] for t in TOKENS]
    cached = llm.forward(TOKENS, prefix, start=start, lower_states=states)
    grads_cached = torch.autograd.grad(cached.square().sum(), params)
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_cached, grads_uncached):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert all(g.abs().sum() > 0 for g in grads_cached)


@pytest.mark.parametrize("family", FAMILIES)
def test_left_padding_does_not_change_a_vector_with_top_layer_prefixes(family):
    llm = _llm(family)
    prefix = _prefix(llm, 1, 2)
    batch = llm.forward(TOKENS, prefix, start=1)
    alone = llm.forward([TOKENS[1]], [(k[1:2], v[1:2]) for k, v in prefix], start=1)
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=1e-5)


def test_prefix_must_cover_the_top_layers():
    llm = _llm("llama")
    with pytest.raises(ValueError, match="top 2 layers"):
        llm.forward(TOKENS, _prefix(llm, 1, 2), start=2)


@pytest.fixture(scope="module")
def data():
    log, text = make_interactions(n_users=60, n_items=30, n_categories=3, max_length=12, random_state=5)
    return log.to_array(), text


def _fit(data, **kw):
    X, text = data
    params = dict(llm=tiny_llm(text, layers=3), backbone_params=dict(dim=16, n_layers=1, n_heads=2, inner_dim=32,
                                                                     max_len=10),
                  cf_epochs=3, epochs=1, max_train_samples=48, sample_fraction=None, batch_size=8, verbose=0,
                  random_state=0)
    params.update(kw)
    return RARecommender(**params).fit(X, item_text=text)


def test_top_layer_prefixes_train_fewer_parameters_and_cache_changes_nothing(data):
    full = _fit(data)
    top = _fit(data, prefix_layers=1)
    uncached = _fit(data, prefix_layers=1, lower_cache_mb=0)
    assert top.aligner_.user_prefix.n_layers == 1
    def prefix_parameters(rec):  # the output heads, when kept, do not depend on the depth
        return sum(p.numel() for tower in (rec.aligner_.user_prefix, rec.aligner_.item_prefix)
                   for p in tower.parameters())

    assert prefix_parameters(top) * 3 == prefix_parameters(full)
    users = top.users_.ids
    assert np.array_equal(top.predict(users), uncached.predict(users))
    torch.testing.assert_close(top.item_vectors_, uncached.item_vectors_, atol=1e-5, rtol=1e-5)
    assert top.towers_.item_states is None  # the cache is dropped after fit
    history = [list(top.items_.ids[:3])]
    assert top.recommend(histories=history, k=3)[0].shape == (1, 3)  # new users: lower layers run on the fly


def test_prefix_layers_is_checked_and_capped_at_the_llm_depth(data):
    deep = _fit(data, prefix_layers=5)  # more than the LLM's 3 layers: every layer
    assert deep.aligner_.user_prefix.n_layers == deep.llm_.spec.n_layers == 3
    assert deep.aligner_.start(deep.llm_) == 0
    with pytest.raises(ValueError, match="prefix_layers"):
        _fit(data, prefix_layers=0)


def test_saved_top_layer_model_loads(data, tmp_path):
    rec = _fit(data, prefix_layers=2)
    rec.save(tmp_path / "m")
    back = RARecommender.load(tmp_path / "m", llm=rec.llm)
    history = [list(rec.items_.ids[:3])]
    assert np.array_equal(back.recommend(histories=history)[0], rec.recommend(histories=history)[0])


def test_length_bucketed_batches_cover_every_sample_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, 1000)
    batches = length_bucketed_batches(lengths, 16, rng, bucket_batches=8)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.5 * np.mean([np.ptp(lengths[rng.permutation(1000)[:16]]) for _ in range(50)])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("start", [0, 2])
def test_mean_pooling_averages_the_real_tokens_final_states_whatever_the_padding(family, start):
    llm = _llm(family)
    prefix = _prefix(llm, start, 2)
    batch = llm.forward(TOKENS, prefix, start=start, pooling="mean")
    for row, tokens in enumerate(TOKENS):
        own = [(k[row:row + 1], v[row:row + 1]) for k, v in prefix]
        # each prefix of the prompt alone, pooled by its last token, is that token's final state
        states = torch.cat([llm.forward([tokens[:end]], own, start=start) for end in range(1, len(tokens) + 1)])
        torch.testing.assert_close(batch[row], states.mean(0), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch, llm.forward(TOKENS, prefix, start=start))  # not the last token's
    with pytest.raises(ValueError, match="pooling must be one of"):
        llm.forward(TOKENS, prefix, start=start, pooling="max")


def test_a_prefix_config_refuses_an_unknown_pooling():
    from rarec.align import PrefixConfig

    assert PrefixConfig(id_dim=4).pooling == "last" and PrefixConfig(id_dim=4, pooling="mean").pooling == "mean"
    with pytest.raises(ValueError, match="'pooling' parameter of PrefixConfig must be one of"):
        PrefixConfig(id_dim=4, pooling="max")


def test_a_prefix_config_refuses_an_unknown_reparameterization():
    from rarec.align import PrefixConfig

    with pytest.raises(ValueError, match="'reparameterization' parameter of PrefixConfig must be one of"):
        PrefixConfig(id_dim=4, reparameterization="lora")
