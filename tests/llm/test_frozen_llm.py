import numpy as np
import pytest
import torch

from rarec.align import PrefixConfig, PrefixProjector
from rarec.llm import FrozenLLM, LLMLoadError, LLMSpec
from rarec.llm._compat import cache_layers, output_cache

from rarec.testing import FAMILIES, tiny_llm


@pytest.fixture(params=FAMILIES)
def llm(request):
    return FrozenLLM(*tiny_llm(family=request.param))


def test_spec_is_read_from_the_config_gqa_aware():
    llama = FrozenLLM(*tiny_llm(family="llama")).spec
    assert llama == LLMSpec(n_layers=2, n_kv_heads=2, head_dim=8, hidden_size=32)
    assert llama.kv_dim == 16
    gpt2 = FrozenLLM(*tiny_llm(family="gpt2")).spec
    assert gpt2 == LLMSpec(n_layers=2, n_kv_heads=4, head_dim=8, hidden_size=32)


def test_weights_are_frozen_and_in_eval_mode(llm):
    assert not any(p.requires_grad for p in llm.model.parameters())
    assert not llm.model.training
    assert not hasattr(llm.model, "lm_head")  # the base decoder only


def test_prefix_from_real_tokens_reproduces_the_full_sequence(llm):
    ids = torch.randint(3, 15, (1, 9), generator=torch.Generator().manual_seed(0)).tolist()[0]
    full = llm.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
    with torch.no_grad():
        cache = output_cache(llm.model(input_ids=torch.tensor([ids[:4]]), use_cache=True))
    prefix = cache_layers(cache)
    # the real first 4 tokens, replayed as a prefix, leave the rest of the sequence unchanged
    # (their keys carry their positions; the continuation starts at position 4 = prefix length)
    with torch.no_grad():
        vector = llm.forward([ids[4:]], prefix)[0]
    torch.testing.assert_close(vector, full, rtol=1e-4, atol=1e-5)


def test_left_padding_gives_the_same_vector_as_no_padding(llm):
    projector = PrefixProjector(llm.spec, PrefixConfig(id_dim=6, n_ctx=2))
    with torch.no_grad():
        for p in projector.parameters():
            p.normal_()  # a far-from-zero prefix, so the test means something
    emb = torch.randn(2, 1, 6)
    short, long = [5, 6, 7], [8, 9, 10, 11, 12, 13, 14]
    with torch.no_grad():
        batched = llm.forward([short, long], projector(emb))
        alone = llm.forward([short], projector(emb[:1]))
    torch.testing.assert_close(batched[0], alone[0], rtol=1e-4, atol=1e-5)


def test_missing_paths_give_clear_errors(tmp_path):
    with pytest.raises(LLMLoadError, match="no such GGUF file"):
        FrozenLLM.load(str(tmp_path / "model.gguf"))
    with pytest.raises(LLMLoadError, match="no such model folder"):
        FrozenLLM.load(str(tmp_path / "nothing" / "here"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LLMLoadError, match="holds no config.json"):
        FrozenLLM.load(str(tmp_path / "empty"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    with pytest.raises(LLMLoadError, match="not a readable GGUF"):
        FrozenLLM.load(str(bad))


def test_loads_a_saved_folder(tmp_path):
    model, tokenizer = tiny_llm(family="qwen2")
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    llm = FrozenLLM.load(str(tmp_path / "m"), device="cpu")
    assert llm.identity["kind"] == "folder" and llm.spec.n_layers == 2
    ids = [[4, 5, 6]]
    torch.testing.assert_close(llm.forward(ids), FrozenLLM(model, tokenizer).forward(ids))
    assert np.isfinite(llm.n_parameters)


def test_prompt_keys_values_ignore_padding(llm):
    a, b = [5, 6, 7], [8, 9, 10, 11, 12]
    both = llm.prompt_states([a, b], 0, 0, states=False, keys_values=True)[1]
    alone = llm.prompt_states([a], 0, 0, states=False, keys_values=True)[1]
    assert both.shape == (2, llm.spec.n_layers, 2, llm.spec.kv_dim)
    torch.testing.assert_close(both[:1], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("native, warned", [(False, True), (True, False)])
def test_bf16_on_a_cpu_without_bf16_instructions_warns_that_it_is_slow(monkeypatch, native, warned):
    import warnings

    import rarec._device as device

    monkeypatch.setattr(device.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frozen = FrozenLLM.load(tiny_llm(), device="cpu", dtype=torch.bfloat16)
        FrozenLLM.load(tiny_llm(), device="cpu", dtype=torch.float32)  # fp32 never warns
    assert frozen.dtype == torch.bfloat16
    slow = [w for w in caught if "without bfloat16 instructions" in str(w.message)]
    assert len(slow) == int(warned)
    if warned:
        assert "llm_dtype='float32'" in str(slow[0].message)


def test_bf16_is_not_checked_off_x86(monkeypatch):
    import warnings

    import rarec._device as device

    monkeypatch.setattr(device.platform, "machine", lambda: "arm64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FrozenLLM.load(tiny_llm(), device="cpu", dtype=torch.bfloat16)
