"""Where the configs are, and paths as Hydra override values: kept free of torch so that ``i2am --help`` and
``i2am reproduce --help`` start in well under a second."""
from __future__ import annotations

import os
from pathlib import Path


def package_dir(name: str) -> Path:
    """A top-level folder of the repository (conf/) that installs carry as i2am/<name>: the installed copy (wheel,
    `pip install .`), else the checkout's own (editable install)."""
    package = Path(__file__).resolve().parents[2]   # i2am/app/tasks/config_dirs.py -> i2am/
    installed = package / name
    return installed if installed.is_dir() else package.parent / name


def config_dir() -> Path:
    """The configs every task composes: the directory named by I2AM_CONF, else the package's conf/."""
    env = os.environ.get("I2AM_CONF")
    path = Path(env) if env else package_dir("conf")
    if not (path / "paths" / "default.yaml").is_file():
        raise FileNotFoundError(f"no i2am config directory at {path} (I2AM_CONF={env!r}); reinstall i2am or set "
                                "I2AM_CONF to a copy of the repository's conf/")
    return path


def quoted(path: Path) -> str:
    """A path as a Hydra override value (checkpoint names such as ``step=3.ckpt`` contain '=')."""
    return "'" + str(path).replace("'", "\\'") + "'"
