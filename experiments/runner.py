"""Shared driver of the experiments/<artifact>.py scripts: run the artifact's runs, then build its table or figure.

An artifact is a config in conf/experiment/ (a ``# @package _global_`` delta of the task it names) with a block

    artifact:
      name: vitonhd_table
      task: attribute                # or detect
      evaluate: quality              # conf/evaluator/<name> for `i2am evaluate` after each run; null = none
      output_dir: ${paths.output_dir}/experiments/${artifact.name}
      runs:                          # label -> extra overrides of that run (one run per label, in order)
        stableviton: [model=stableviton]
      checkpoints:                   # optional: label -> model.checkpoint of that run (null = random weights)
        stableviton: ${paths.ckpt_dir}/VITONHD.ckpt

Multi-model tables are this list of runs (each model needs its own checkpoint, data extras and sampler), so one
config holds the whole table; the script loops over it in one process. A finished run is skipped (its
metrics.json exists), so a script can be started again after a failure, or with ``--make-only`` to rebuild the
table/figure from finished runs. On a cluster, run each label as its own job instead (README.md).

    python experiments/<artifact>.py [--toy] [--make-only] [hydra overrides ...]     # --toy: the offline twin
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:       # the scripts run as files from a checkout
    sys.path.insert(0, str(REPO))

from i2am.runs import RunDir
from i2am.tasks import get_task
from i2am.tasks.common import config_dir, quoted

log = logging.getLogger(__name__)

Maker = Callable[[dict[str, Path], Path, DictConfig], list[Path]]


def artifact_config(name: str, overrides: Sequence[str] = ()) -> tuple[str, DictConfig]:
    """(task, composed config) of conf/experiment/<name>.yaml; must run inside a Hydra context."""
    file = config_dir() / "experiment" / f"{name}.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"no experiment config {file}")
    task = OmegaConf.select(OmegaConf.load(file), "artifact.task")
    if task is None:
        raise KeyError(f"{file} has no artifact.task")
    return task, compose(config_name=task, overrides=[f"experiment={name}", *overrides])


def checkpoint_override(cfg: DictConfig, label: str) -> list[str]:
    """``model.checkpoint=...`` from ``artifact.checkpoints.<label>`` (an override string cannot carry a null)."""
    checkpoints = cfg.artifact.get("checkpoints") or {}
    if label.removesuffix("_unpaired") not in checkpoints:
        return []
    path = checkpoints[label.removesuffix("_unpaired")]
    return [f"model.checkpoint={'null' if path is None else quoted(path)}"]


def run_artifact(name: str, overrides: Sequence[str] = (), make_only: bool = False
                 ) -> tuple[dict[str, Path], Path, DictConfig]:
    """Run every run of the artifact that is not finished yet; returns (label -> run dir, artifact output dir, the
    artifact's composed config)."""
    task, cfg = artifact_config(name, overrides)
    out = Path(cfg.artifact.output_dir)
    runs = {}
    for label, run_overrides in cfg.artifact.runs.items():
        run_dir = out / label
        runs[label] = run_dir
        if make_only or RunDir(run_dir).is_finished():
            continue
        run_cfg = compose(config_name=task, overrides=[f"experiment={name}", *overrides, *run_overrides,
                                                       *checkpoint_override(cfg, label), f"run_dir={quoted(run_dir)}"])
        log.info("%s: run %s -> %s", name, label, run_dir)
        get_task(task).run(run_cfg)
        if cfg.artifact.get("evaluate"):
            get_task("evaluate").run(compose(config_name="evaluate", overrides=[
                f"run_dir={quoted(run_dir)}", f"evaluator@quality={cfg.artifact.evaluate}"]))
    missing = [str(p) for p in runs.values() if not RunDir(p).is_finished()]
    if missing:
        raise FileNotFoundError(f"{name}: unfinished runs {missing}; run without --make-only first")
    return runs, out, cfg


def main(name: str, make: Maker, argv: Sequence[str] | None = None) -> list[Path]:
    """The body of every experiments/<artifact>.py: run, then make the table/figure; prints what it wrote."""
    argv = list(sys.argv[1:] if argv is None else argv)
    make_only = "--make-only" in argv
    name = f"{name}-toy" if "--toy" in argv else name
    overrides = [a for a in argv if a not in ("--make-only", "--toy")]
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        runs, out, cfg = run_artifact(name, overrides, make_only)
    written = make(runs, out, cfg)
    for path in written:
        print(path)
    return written
