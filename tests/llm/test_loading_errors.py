"""The LLM source is checked before anything is loaded, and every failure is one clear LLMLoadError."""

import time

import numpy as np
import pytest

from rarec import RARecommender
from rarec.llm import LLMLoadError, check_llm_source


def test_a_folder_named_like_a_gguf_file_is_called_a_folder(tmp_path):
    (tmp_path / "model.gguf").mkdir()
    with pytest.raises(LLMLoadError, match="is a folder, not a GGUF file"):
        check_llm_source(tmp_path / "model.gguf")
    with pytest.raises(LLMLoadError, match="no such GGUF file"):
        check_llm_source(tmp_path / "other.gguf")


def test_a_hub_id_without_network_fails_at_once(monkeypatch):
    import socket

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(LLMLoadError, match="hub could not be reached") as caught:
        check_llm_source("some-org/not-cached-model")
    assert "pip install" not in str(caught.value)  # no hint about the default model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LLMLoadError, match="HF_HUB_OFFLINE"):
        check_llm_source("some-org/not-cached-model")


def test_the_llm_is_checked_before_the_data_is_read_or_the_cf_stage_trained(tmp_path):
    start = time.perf_counter()
    with pytest.raises(LLMLoadError, match="no such model folder"):
        RARecommender(llm=str(tmp_path / "missing" / "model"), verbose=0).fit(np.zeros((0, 2)))
    assert time.perf_counter() - start < 30  # an empty log would fail later, in the data layer


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_a_folder_with_unreadable_weights_is_one_error(tmp_path, weights):
    import json
    import pickle

    from rarec.llm import FrozenLLM
    from rarec.testing import tiny_llm

    folder = tmp_path / "llm"
    model, tokenizer = tiny_llm(None)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / weights).write_bytes(pickle.dumps(Payload()))  # neither a state dict nor safetensors
    with pytest.raises(LLMLoadError, match="could not load the LLM") as caught:
        FrozenLLM.load(str(folder), device="cpu", verbose=False)
    assert "\n" not in str(caught.value) and not marker.exists()  # one line; the pickle never ran
    json.dumps(str(caught.value))
