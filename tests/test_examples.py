"""The examples run as a user would run them (the quick variants)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("args", [["quickstart.py", "--tiny"], ["your_own_csv.py"]])
def test_example_runs(args):
    result = subprocess.run([sys.executable, str(EXAMPLES / args[0]), *args[1:]], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "NDCG@10" in result.stdout
