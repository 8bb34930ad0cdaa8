"""The CUDA path: bf16 loading, device placement, CPU/GPU agreement. Skipped where torch sees no GPU.

The rest of the suite also runs on CUDA on a GPU machine (``device="auto"`` picks it); these
tests check what only a GPU run can show.
"""

import numpy as np
import pytest
import torch

from rarec import RARecommender
from rarec.llm import FrozenLLM
from rarec.testing import tiny_llm

from .test_estimator import small as estimator_small
from .test_estimator import synthetic_split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")

TOKENS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]


def small(llm, **kw):
    return estimator_small(llm, **{"cf_epochs": 5, **kw})


@pytest.fixture(scope="module")
def data():
    return synthetic_split()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, data):
    """A tiny Llama saved as a transformers folder, so it goes through the real loading path."""
    model, tokenizer = tiny_llm(data[2])
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_loaded_llm_is_bf16_on_cuda_and_the_aligner_stays_fp32(data, model_folder):
    X, test, text = data
    rec = small(model_folder, device="cuda").fit(X, item_text=text)
    assert rec.llm_.device.type == "cuda" and rec.llm_.dtype == torch.bfloat16
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in rec.aligner_.parameters())
    for vectors in (rec.user_vectors_, rec.item_vectors_):
        assert vectors.device.type == "cpu" and vectors.dtype == torch.float32
        assert torch.isfinite(vectors).all()
    ids = rec.predict(np.unique(X[:, 0])[:5])
    assert ids.shape == (5, rec.k) and set(ids.ravel()) <= set(X[:, 1])
    assert np.isfinite(rec.score(test))
    assert all(np.isfinite(r["loss"]) for r in rec.training_log_)


def test_llm_dtype_float32_on_cuda(data, model_folder):
    X, _, text = data
    rec = small(model_folder, device="cuda", llm_dtype="float32", max_train_samples=16).fit(X, item_text=text)
    assert rec.llm_.dtype == torch.float32 and rec.llm_.device.type == "cuda"


def test_explicit_dtype_and_device_when_loading(model_folder):
    llm = FrozenLLM.load(model_folder, device="cuda", dtype=torch.float32)
    assert llm.dtype == torch.float32 and llm.device.type == "cuda"
    cpu = FrozenLLM.load(model_folder, device="cpu")
    assert cpu.dtype == torch.float32 and cpu.device.type == "cpu"
    torch.testing.assert_close(llm.forward(TOKENS).cpu(), cpu.forward(TOKENS), atol=1e-4, rtol=1e-4)


def test_a_cpu_model_loaded_on_cuda_ranks_new_histories_like_the_cpu(data, tmp_path):
    X, _, text = data
    pair = tiny_llm(text)
    rec = small(pair, device="cpu").fit(X, item_text=text)
    rec.save(tmp_path / "m")
    on_gpu = RARecommender.load(tmp_path / "m", llm=tiny_llm(text), device="cuda")
    assert on_gpu.llm_.device.type == "cuda"
    histories = [list(X[X[:, 0] == u, 1][:6]) for u in np.unique(X[:, 0])[:8]]
    ids_cpu, scores_cpu = rec.recommend(histories=histories, k=10)
    ids_gpu, scores_gpu = on_gpu.recommend(histories=histories, k=10)
    np.testing.assert_allclose(scores_gpu, scores_cpu, atol=1e-3, rtol=1e-3)
    assert (ids_gpu[:, :3] == ids_cpu[:, :3]).mean() > 0.9  # near-ties may swap further down
    # known users: cached vectors on the CPU, no GPU needed
    np.testing.assert_array_equal(on_gpu.predict(np.unique(X[:, 0])[:4]), rec.predict(np.unique(X[:, 0])[:4]))


def test_a_gpu_model_saves_and_loads_on_the_cpu(data, tmp_path):
    X, _, text = data
    rec = small(tiny_llm(text), device="cuda").fit(X, item_text=text)
    rec.save(tmp_path / "m")
    back = RARecommender.load(tmp_path / "m", llm=tiny_llm(text), device="cpu")
    assert back.llm_.device.type == "cpu"
    users = np.unique(X[:, 0])[:6]
    np.testing.assert_array_equal(back.predict(users), rec.predict(users))


def test_bf16_left_padding_and_lower_cache_agree_within_bf16_precision():
    model, tokenizer = tiny_llm(None, layers=4)
    llm = FrozenLLM(model.to("cuda", torch.bfloat16), tokenizer)
    spec = llm.spec
    gen = torch.Generator().manual_seed(0)
    prefix = [tuple(torch.randn(len(TOKENS), spec.n_kv_heads, 2, spec.head_dim, generator=gen).cuda()
                    for _ in range(2)) for _ in range(spec.n_layers - 2)]
    batch = llm.forward(TOKENS, prefix, start=2).float()
    alone = llm.forward([TOKENS[1]], [(k[1:2], v[1:2]) for k, v in prefix], start=2).float()
    torch.testing.assert_close(batch[1:2], alone, atol=5e-2, rtol=5e-2)
    states = [llm.lower_states([t], 2, 2)[0] for t in TOKENS]
    cached = llm.forward(TOKENS, prefix, start=2, lower_states=states).float()
    torch.testing.assert_close(cached, batch, atol=5e-2, rtol=5e-2)
