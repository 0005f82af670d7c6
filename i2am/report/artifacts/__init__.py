"""The paper's tables and figures (docs/experiments.md): one module per artifact, each with
``make(runs, out, cfg) -> written files`` over the artifact's finished job folders (label -> folder) and its composed
config, and ``TASK`` where its runs are not ``i2am attribute`` runs. An artifact is its module here plus its
conf/experiment/<artifact>.yaml (its runs and its offline twin): nothing else lists it. `i2am reproduce`
(i2am/app/reproduce.py) runs the jobs, then calls :func:`make`."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from pathlib import Path

ARTIFACTS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))
DEFAULT_TASK = "attribute"


def _module(name: str):
    if name not in ARTIFACTS:
        raise KeyError(f"unknown paper artifact {name!r}; artifacts: {', '.join(ARTIFACTS)}")
    return importlib.import_module(f"{__name__}.{name}")


def task_of(name: str) -> str:
    """The i2am task that runs artifact ``name``'s jobs."""
    return getattr(_module(name), "TASK", DEFAULT_TASK)


def make(name: str, runs: Mapping[str, Path], out: Path, cfg=None) -> list[Path]:
    """Draw artifact ``name`` from its runs into ``out``."""
    return _module(name).make(dict(runs), out, cfg)
