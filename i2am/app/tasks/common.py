"""Helpers every task shares: the run folder, seeding, Lightning trainer, callbacks and loggers from config."""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from i2am.app.config_schema import validate
from i2am.app.tasks.config_dirs import config_dir, quoted  # noqa: F401 - the tasks' one import point
from i2am.app.tasks.dashboards import build_loggers, finish_loggers, log_results  # noqa: F401 - the tasks' one import point
from i2am.runs import RunDir

log = logging.getLogger(__name__)


def run_dir(cfg: DictConfig) -> RunDir:
    """The run's folder: Hydra's run/sweep dir, or ``cfg.run_dir`` when set (resume an earlier run); created. The
    ``FAILED`` marker of an earlier attempt is logged and removed."""
    if cfg.get("run_dir"):
        path = Path(cfg.run_dir)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        path = Path(cfg.paths.output_dir) / str(cfg.get("task_name", "run"))
    run = RunDir(path)
    failure = run.failure()
    if failure:   # started again: the earlier error is reported once, then the folder is an ordinary run again
        log.warning("%s failed earlier (%s); running it again", run.path, failure)
        run.clear_failure()
    return run.create()


def seed_everything(seed: int) -> None:
    import lightning

    lightning.seed_everything(int(seed), workers=True, verbose=False)


def build_callbacks(cfg: DictConfig) -> list:
    """The ``callbacks`` group: every entry with a ``_target_`` (conf/callbacks/*.yaml), in config order."""
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values() if spec]


def build_trainer(cfg: DictConfig, run: RunDir, loggers=None, **overrides):
    """``cfg.trainer`` (a ``_target_: lightning.Trainer`` node) instantiated with the run folder and loggers."""
    return instantiate(cfg.trainer, default_root_dir=str(run.path), logger=loggers if loggers else False,
                       **overrides)


def start_run(cfg: DictConfig, stage: str):
    """The opening of every data-driven task: run folder, saved config, seed, and the data module, set up so that
    its whole layout is validated before any model is built. Returns (run, datamodule)."""
    validate(cfg)   # also on the compose-API path; the CLI has checked already
    run = run_dir(cfg)
    run.save_config(cfg)
    seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return run, datamodule
