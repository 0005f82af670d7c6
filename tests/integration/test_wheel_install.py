"""A built wheel, installed into a fresh virtualenv with no checkout on the path, carries its configs and runs from
an empty directory (writing under that directory's outputs/).

The fresh venv borrows the test runner's third-party packages through a .pth line (a path line does not run that
directory's own .pth files, so the runner's editable i2am stays invisible) instead of reinstalling torch."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from helpers.paths import REPO

ROOT = REPO
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "i2am", "hydra_plugins", "conf")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding only the wheel built from a copy of the sources (the checkout stays clean)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "local"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("i2am-*.whl"))
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "runner_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return env_dir / "bin"


def run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "I2AM_CONF", "I2AM_TASK", "I2AM_ROOT",
                                                            "I2AM_OUTPUT_DIR", "I2AM_DATA_DIR")}
    proc = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_the_wheel_is_what_gets_imported(installed, tmp_path):
    where = run(installed, tmp_path, "python", "-c", "import i2am, i2am.app.cli; print(i2am.__file__); "
                                                     "print(i2am.app.cli.config_dir())").stdout.split()
    prefix = str(installed.parent)
    assert where[0].startswith(prefix) and where[1].startswith(prefix), where
    assert where[1].endswith("i2am/conf")


def test_installed_cli_help_config_and_reproduce_list(installed, tmp_path):
    assert "attribute" in run(installed, tmp_path, "i2am", "--help").stdout
    job = run(installed, tmp_path, "i2am", "attribute", "--cfg", "job").stdout
    assert "sampler:" in job and "capture:" in job
    assert "teaser" in run(installed, tmp_path, "i2am", "reproduce", "--help").stdout


def test_one_sample_toy_attribute_from_an_empty_directory(installed, tmp_path):
    run(installed, tmp_path, "i2am", "attribute", "data.limit=1", "data.batch_size=1", "data.toy.n_train=2",
        "data.toy.n_test=1", "sampler.num_steps=2", "trainer.enable_progress_bar=false", "num_figures=0")
    written = list((tmp_path / "outputs" / "attribute").glob("*/metrics.json"))
    assert len(written) == 1
    assert json.loads(written[0].read_text())["n_samples"] == 1
    assert (tmp_path / "data").is_dir()       # the toy world went to ./data, the default paths.data_dir


@pytest.mark.slow   # a whole toy multirun from the wheel (minutes); the artifacts' own runs are in test_experiments
def test_reproduce_a_toy_artifact_from_an_empty_directory(installed, tmp_path):
    proc = run(installed, tmp_path, "i2am", "reproduce", "sram_stableviton", "--toy",
               "trainer.enable_progress_bar=false")
    figures = sorted((tmp_path / "outputs" / "experiments" / "sram_stableviton-toy").glob("sram_*.png"))
    assert figures and {p.name for p in figures} <= {Path(word).name for word in proc.stdout.split()}


def test_the_wheel_carries_the_shipped_toy_checkpoints(installed, tmp_path):
    from i2am.pretrained import toy_checkpoint, toy_names
    from i2am.pretrained.export import sha256

    names = run(installed, tmp_path, "python", "-m", "i2am.pretrained").stdout.split()
    assert names == toy_names() and len(names) >= 4
    for name in names:
        path = Path(run(installed, tmp_path, "python", "-m", "i2am.pretrained", name).stdout.strip())
        assert path.is_relative_to(installed.parent) and sha256(path) == sha256(toy_checkpoint(name))
        assert path.with_suffix(".json").is_file()
