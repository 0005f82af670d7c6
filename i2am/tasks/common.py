"""Helpers every task shares: the run folder, seeding, Lightning trainer, callbacks and loggers from config."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..runs import RunDir

log = logging.getLogger(__name__)


def config_dir() -> Path:
    """conf/ of the checkout (editable install), or the directory named by I2AM_CONF."""
    env = os.environ.get("I2AM_CONF")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "conf"
    if not (path / "paths" / "default.yaml").is_file():
        raise FileNotFoundError(f"no i2am config directory at {path}; set I2AM_CONF to the repository's conf/")
    return path


def quoted(path: Path) -> str:
    """A path as a Hydra override value (checkpoint names such as ``step=3.ckpt`` contain '=')."""
    return "'" + str(path).replace("'", "\\'") + "'"


def run_dir(cfg: DictConfig) -> RunDir:
    """The run's folder: Hydra's run/sweep dir, or ``cfg.run_dir`` when set (resume an earlier run); created."""
    if cfg.get("run_dir"):
        path = Path(cfg.run_dir)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        path = Path(cfg.paths.output_dir) / str(cfg.get("task_name", "run"))
    return RunDir(path).create()


def seed_everything(seed: int) -> None:
    import lightning

    lightning.seed_everything(int(seed), workers=True, verbose=False)


def build_loggers(cfg: DictConfig, run: RunDir) -> list:
    """CSV always, plus whatever ``cfg.logger`` adds (wandb offline by default, TensorBoard)."""
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        loggers.append(instantiate(spec, save_dir=str(run.path)))
        log.info("logger %s -> %s", name, run.path)
    return loggers


def build_callbacks(cfg: DictConfig) -> list:
    """The ``callbacks`` group: every entry with a ``_target_`` (conf/callbacks/*.yaml), in config order."""
    return [instantiate(spec) for spec in (cfg.get("callbacks") or {}).values() if spec]


def build_trainer(cfg: DictConfig, run: RunDir, loggers=None, **overrides):
    """``cfg.trainer`` (a ``_target_: lightning.Trainer`` node) instantiated with the run folder and loggers."""
    return instantiate(cfg.trainer, default_root_dir=str(run.path), logger=loggers if loggers else False,
                       **overrides)


def finish_loggers(loggers) -> None:
    """Close every logger, also after a failure, so multirun jobs never bleed into each other (wandb)."""
    for lg in loggers or []:
        try:
            lg.finalize("success")
        except Exception:  # noqa: BLE001 - closing must never mask the task's own error
            log.exception("could not finalize logger %s", type(lg).__name__)
        experiment = getattr(lg, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish()


def log_results(loggers, cfg: DictConfig, metrics: dict, images=(), table: list[dict] | None = None) -> None:
    """Send a finished run to its loggers: the config, the numeric metrics, sample panels and a per-sample table
    (the last two where the logger supports them, e.g. wandb)."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run
        config = OmegaConf.to_container(cfg, resolve=False)
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for lg in loggers or []:
        lg.log_hyperparams(config)
        lg.log_metrics(numbers)
        if images and hasattr(lg, "log_image"):
            lg.log_image(key="samples", images=[str(p) for p in images], caption=[Path(p).stem for p in images])
        if table and hasattr(lg, "log_table"):
            columns = sorted({k for row in table for k in row})
            lg.log_table(key="per_sample", columns=columns, data=[[row.get(c) for c in columns] for row in table])
        lg.save()


def start_run(cfg: DictConfig, stage: str):
    """The opening of every data-driven task: run folder, saved config, seed, and the data module, set up so that
    its whole layout is validated before any model is built. Returns (run, datamodule)."""
    run = run_dir(cfg)
    run.save_config(cfg)
    seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return run, datamodule
