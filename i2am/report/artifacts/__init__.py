"""The paper's tables and figures (docs/experiments.md): one module per artifact, each with
``make(runs, out, cfg) -> written files`` over the artifact's finished job folders (label -> folder) and its composed
config. `i2am reproduce` (i2am/app/reproduce.py) runs the jobs, then calls :func:`make`."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

ARTIFACTS = ("vitonhd_table", "detection_table", "llam_stableviton", "tlam_hlam_dcivton", "sram_stableviton",
             "daam_comparison", "debugging_custom", "teaser", "sr_figure")
TASKS = {"detection_table": "detect"}      # the i2am task of an artifact's runs; attribute where not named


def task_of(name: str) -> str:
    return TASKS.get(name.removesuffix("-toy"), "attribute")


def make(name: str, runs: Mapping[str, Path], out: Path, cfg=None) -> list[Path]:
    """Draw artifact ``name`` (``-toy`` suffix allowed) from its runs into ``out``."""
    base = name.removesuffix("-toy")
    if base not in ARTIFACTS:
        raise KeyError(f"unknown paper artifact {name!r}; artifacts: {', '.join(ARTIFACTS)}")
    return importlib.import_module(f"{__name__}.{base}").make(dict(runs), out, cfg)
