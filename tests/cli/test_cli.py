import re

import pytest
from click.testing import CliRunner

from rarec import __version__
from rarec.cli import main

from rarec.testing import tiny_llm


def test_version_and_info():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0
    for name in ("rarec", "torch", "transformers", "device", "default LLM"):
        assert re.search(rf"^{name}\s+\S+", result.output, re.M), result.output


def test_demo_cf_only_prints_a_table_on_stdout_and_progress_on_stderr():
    result = CliRunner().invoke(main, ["demo", "--cf-only", "--users", "60", "--items", "40", "-k", "5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["model", "hr@5", "ndcg@5", "mrr@5"]
    assert [line.split()[0] for line in lines[2:]] == ["popularity", "sasrec"]
    assert "synthetic catalogue: 60 users" in result.stderr
    quiet = CliRunner().invoke(main, ["demo", "--cf-only", "--users", "60", "--items", "40", "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_demo_full_pipeline_with_a_local_llm(tmp_path):
    from rarec.data import make_interactions

    _, text = make_interactions(n_users=60, n_items=40, random_state=0)
    model, tokenizer = tiny_llm(text)
    model.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    result = CliRunner().invoke(main, ["demo", "--users", "60", "--items", "40", "--llm", str(tmp_path / "llm"),
                                       "--epochs", "1", "--samples", "32", "-q"])
    assert result.exit_code == 0, result.output
    names = [line.split("  ")[0].strip() for line in result.stdout.strip().splitlines()[2:]]
    assert names == ["popularity", "sasrec (CF only)", "RA-Rec (sasrec)"]


@pytest.mark.parametrize("args", [["demo", "--users", "1"], ["demo", "--backbone", "gru4rec"]])
def test_usage_errors_exit_with_2(args):
    assert CliRunner().invoke(main, args).exit_code == 2
