"""The layering contract of pyproject.toml ([tool.importlinter]) holds: imports only look down."""
import subprocess
import sys

from helpers.paths import REPO


def test_import_linter_contracts_are_kept():
    code = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports())"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_importing_the_figure_modules_keeps_the_global_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import i2am.viz.figures, i2am.viz.panels, "
            "i2am.evaluation.correlation, i2am.viz.pasd, i2am.viz.toy_kontext, i2am.viz.plot, i2am.viz.canvas; "
            "print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"
