"""`ruff check` is clean on the whole repository with the rules of pyproject.toml ([tool.ruff])."""
import subprocess
import sys

from helpers.paths import REPO


def test_ruff_check_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
