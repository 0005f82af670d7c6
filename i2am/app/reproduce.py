"""`i2am reproduce <artifact> [--toy] [--make-only] [hydra overrides]`: one paper table or figure, from any directory.

1. the artifact's runs, as one Hydra multirun of conf/experiment/<artifact>.yaml:
   ``i2am <task> -m experiment=<artifact> [artifact.twin=toy] [overrides]``, one job folder per label of its
   ``artifact.runs`` (i2am.app.artifact_jobs) under ``<paths.output_dir>/experiments/<artifact>[-toy]/``
   (``./outputs`` unless I2AM_OUTPUT_DIR is set), each with its ``.hydra/``; ``hydra/launcher=joblib`` (or a submitit
   launcher) among the overrides runs them on that launcher;
2. ``i2am evaluate`` on every job where the artifact names an evaluator (``artifact.evaluate``);
3. the table/figure from the job folders (i2am.report.artifacts), written next to them; their paths are printed.

``--make-only`` skips 1 and 2 and redraws from the finished jobs. See docs/experiments.md.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from i2am.app.artifact_jobs import job_overrides
from i2am.app.renamed_keys import refuse_renamed_keys
from i2am.app.tasks import get_task
from i2am.app.tasks.config_dirs import config_dir, quoted
from i2am.report.artifacts import ARTIFACTS, make, task_of
from i2am.runs import sweep_jobs

log = logging.getLogger(__name__)
FLAGS = ("--toy", "--make-only")


def usage() -> str:
    names = "\n".join(f"  {name}" for name in ARTIFACTS)
    return ("usage: i2am reproduce <artifact> [--toy] [--make-only] [hydra overrides ...]\n"
            "  --toy        the offline twin on tiny models and the toy world (minutes on a CPU)\n"
            "  --make-only  rebuild the table/figure from finished runs\n\nartifacts:\n" + names)


def artifact_arguments(name: str, toy: bool, overrides: Sequence[str] = ()) -> list[str]:
    """The multirun's arguments: the experiment, the twin, then the caller's overrides."""
    return [f"experiment={name}", *(["artifact.twin=toy"] if toy else []), *overrides]


def artifact_config(name: str, arguments: Sequence[str]) -> DictConfig:
    """The composed config of the artifact's first job (its artifact block: output folder, evaluator)."""
    if not (config_dir() / "experiment" / f"{name}.yaml").is_file():
        raise FileNotFoundError(f"no experiment config {config_dir() / 'experiment' / f'{name}.yaml'}")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        artifact = compose(config_name=task_of(name), overrides=list(arguments)).artifact
        first = next(iter(job_overrides(artifact, arguments).values()))
        return compose(config_name=task_of(name), overrides=first)


def run_jobs(name: str, arguments: Sequence[str]) -> None:
    """The artifact's multirun in a fresh interpreter (Hydra owns its process: launchers, logging, .hydra/)."""
    command = [sys.executable, "-m", "i2am.app.cli", task_of(name), "-m", *arguments]
    log.info("%s", " ".join(command))
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise SystemExit(f"i2am reproduce: the runs of {name} failed (exit {done.returncode}): {' '.join(command)}")


def evaluate_jobs(jobs: dict, evaluator: str) -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        for job in jobs.values():
            get_task("evaluate").run(compose(config_name="evaluate", overrides=[
                f"run_dir={quoted(job.path)}", f"evaluator@quality={evaluator}"]))


def reproduce(name: str, toy: bool = False, make_only: bool = False, overrides: Sequence[str] = ()) -> list[Path]:
    """Run artifact ``name`` (or its offline twin) and draw its table/figure; returns the written files."""
    if name not in ARTIFACTS:
        raise KeyError(f"unknown paper artifact {name!r}; artifacts: {', '.join(ARTIFACTS)}")
    refuse_renamed_keys(overrides)
    arguments = artifact_arguments(name, toy, overrides)
    cfg = artifact_config(name, arguments)
    out = Path(cfg.artifact.output_dir)
    if not make_only:
        run_jobs(name, arguments)
        if cfg.artifact.evaluate:
            evaluate_jobs(sweep_jobs(out), cfg.artifact.evaluate)
    jobs = sweep_jobs(out)
    if not jobs:
        raise FileNotFoundError(f"{name}: no finished job folder in {out}; run without --make-only first")
    return make(name, {label: job.path for label, job in jobs.items()}, out, cfg)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """The CLI, ``i2am reproduce <artifact> [--toy] [--make-only] [overrides]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return []
    name, argv = argv[0], argv[1:]
    if name not in ARTIFACTS:
        print(f"i2am reproduce: unknown artifact {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    written = reproduce(name, toy="--toy" in argv, make_only="--make-only" in argv,
                        overrides=[a for a in argv if a not in FLAGS])
    for path in written:
        print(path)
    return written
