"""The layering contract of pyproject.toml ([tool.importlinter]) holds: imports only look down."""
import re
import subprocess
import sys

from helpers.paths import REPO

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: pytest's own dependency
    import tomli as tomllib


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


def _contract_layers() -> list[list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    assert not contract.get("ignore_imports"), "the layers contract must hold without ignored imports"
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def test_every_package_and_module_of_i2am_has_a_layer():
    package = REPO / "i2am"
    present = {f"i2am.{p.name}" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    present |= {f"i2am.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    placed = {name for layer in _contract_layers() for name in layer}
    assert present - placed == set(), "add these to the layers contract in pyproject.toml"
    assert placed - present == set(), "the layers contract names packages that do not exist"


def test_the_layers_picture_in_the_docs_shows_the_contract_in_order():
    svg = (REPO / "docs" / "assets" / "layers.svg").read_text()
    drawn = re.findall(r'font-weight="bold">([^<]+)<', svg)
    assert drawn == [name for layer in _contract_layers() for name in layer], \
        "docs/assets/layers.svg is out of date with the layers contract in pyproject.toml"


def test_the_model_zoo_imports_no_figure_no_script_and_nothing_above_it():
    code = ("import sys, i2am.adapters as zoo; zoo.list_models(); "
            "bad = [m for m in sys.modules if m == 'matplotlib.pyplot' or m.startswith(('i2am.viz', 'i2am.training', "
            "'i2am.evaluation', 'i2am.app', 'i2am.report', 'i2am.pretrained', 'lightning'))]; "
            "assert zoo._import_errors == {}, zoo._import_errors; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
