import re

from click.testing import CliRunner

from rarec import __version__
from rarec.cli import main


def test_version_and_info():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0
    for name in ("rarec", "torch", "transformers", "device"):
        assert re.search(rf"^{name}\s+\S+", result.output, re.M), result.output


def test_demo_prints_a_metrics_table_on_stdout_and_progress_on_stderr():
    result = CliRunner().invoke(main, ["demo", "--users", "60", "--items", "40", "-k", "5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["model", "split", "hr@5", "ndcg@5", "mrr@5"]
    assert {line.split()[1] for line in lines[2:]} == {"valid", "test"}
    assert "synthetic catalogue: 60 users" in result.stderr
    quiet = CliRunner().invoke(main, ["demo", "--users", "60", "--items", "40", "-q"])
    assert quiet.stderr == ""


def test_usage_errors_exit_with_2():
    result = CliRunner().invoke(main, ["demo", "--users", "1"])
    assert result.exit_code == 2
