"""The examples run as a user would run them (their quick variants)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args, timeout=600):
    result = subprocess.run([sys.executable, str(EXAMPLES / args[0]), *args[1:]], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("args", [
    ["quickstart.py", "--tiny"],
    ["your_own_csv.py"],
    ["grid_search.py", "--tiny"],
    ["precomputed_embeddings.py", "--tiny"],
])
def test_example_runs(args):
    assert "NDCG@10" in run(*args)


def test_larger_llm_example_with_a_local_model_folder(tmp_path):
    from rarec.data import make_interactions
    from rarec.testing import tiny_llm

    _, titles = make_interactions(n_users=150, n_items=60, random_state=0)
    model, tokenizer = tiny_llm(titles, family="qwen2", hidden=48)
    model.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    out = run("larger_llm.py", "--llm", str(tmp_path / "llm"), "--device", "cpu", "--samples", "32")
    assert "NDCG@10" in out and "hidden 48" in out


def test_movielens_example(ml100k_dir, tmp_path):
    out = run("movielens.py", "--data", str(ml100k_dir), "--tiny", "--output", str(tmp_path / "model"))
    assert "943 users, 1349 items" in out and "NDCG@10" in out
    assert (tmp_path / "model" / "config.json").exists()
