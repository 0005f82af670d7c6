"""The run's loggers (CSV always, TensorBoard, wandb): built from ``cfg.logger``, fed the finished run, closed.

A multirun shows up as one comparable set of runs: TensorBoard gets each job's overrides as hparams next to its
final metrics (the HParams table and parallel-coordinates view) plus the sample panels as images; wandb runs of one
multirun share a ``group`` and carry the overrides in their config, with the per-sample table and the panels.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

log = logging.getLogger(__name__)


def job_overrides(cfg: DictConfig) -> dict:
    """This job's command-line overrides as {key: value} (the swept values of a multirun job), plus the seed; the
    value is the composed one where it is a scalar, else the override's text (a group choice such as model=...)."""
    out = {"seed": cfg.get("seed")}
    if not HydraConfig.initialized():
        return out
    for text in HydraConfig.get().overrides.task:
        if "=" not in text:
            continue
        key, value = text.split("=", 1)
        key = key.lstrip("+~")
        composed = OmegaConf.select(cfg, key, default=None)
        out[key] = composed if isinstance(composed, (int, float, str, bool)) else value
    return out


def multirun_group(cfg: DictConfig) -> str | None:
    """The name every job of one multirun shares: <task>-<sweep folder>; None outside a multirun."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return f"{cfg.get('task_name', 'run')}-{Path(HydraConfig.get().sweep.dir).name}"


def is_wandb(logger_or_spec) -> bool:
    target = logger_or_spec.get("_target_", "") if isinstance(logger_or_spec, DictConfig) else \
        type(logger_or_spec).__name__
    return str(target).endswith("WandbLogger")


def is_tensorboard(logger) -> bool:
    return type(logger).__name__ == "TensorBoardLogger"


def build_loggers(cfg: DictConfig, out_dir: os.PathLike) -> list:
    """CSV always, plus whatever ``cfg.logger`` adds (wandb offline by default, TensorBoard)."""
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        extra = {}
        if is_wandb(spec):
            group = spec.get("group") or multirun_group(cfg)
            extra = {"group": group} if group else {}
        loggers.append(instantiate(spec, save_dir=os.fspath(out_dir), **extra))   # a Path or a RunDir
        log.info("logger %s -> %s", name, os.fspath(out_dir))
    return loggers


def log_results(loggers, cfg: DictConfig, metrics: dict, images=(), table: list[dict] | None = None) -> None:
    """Send a finished run to its loggers: config (TensorBoard: the overrides as hparams, with the final metrics),
    the numeric metrics, the sample panels, and (wandb) the per-sample table."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra run
        config = OmegaConf.to_container(cfg, resolve=False)
    overrides = job_overrides(cfg)
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for lg in loggers or []:
        if is_tensorboard(lg):
            lg.log_hyperparams(overrides, metrics=numbers)     # also logs the metrics as scalars
            for path in images:
                lg.experiment.add_image(f"samples/{Path(path).stem}", np.asarray(Image.open(path).convert("RGB")),
                                        global_step=0, dataformats="HWC")
        else:
            lg.log_hyperparams({**config, "overrides": overrides} if is_wandb(lg) else config)
            lg.log_metrics(numbers)
        if images and is_wandb(lg):
            lg.log_image(key="samples", images=[str(p) for p in images], caption=[Path(p).stem for p in images])
        if table and is_wandb(lg):
            columns = sorted({k for row in table for k in row})
            lg.log_table(key="per_sample", columns=columns, data=[[row.get(c) for c in columns] for row in table])
        lg.save()


def finish_loggers(loggers) -> None:
    """Close every logger, also after a failure ("failed" then; wandb exits with code 1), so multirun jobs never
    bleed into each other. Called from a ``finally:``, where a propagating exception is still visible."""
    failed = sys.exc_info()[0] is not None
    for lg in loggers or []:
        try:
            lg.finalize("failed" if failed else "success")
            if is_wandb(lg):
                import wandb

                if wandb.run is not None:
                    wandb.finish(exit_code=1 if failed else 0)
        except Exception:
            log.exception("could not finalize logger %s", type(lg).__name__)
