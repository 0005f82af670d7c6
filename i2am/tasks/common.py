"""Helpers every task shares: the run directory, seeding, Lightning trainer and loggers from config, metrics.json."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..config_schema import validate
from .dashboards import build_loggers, finish_loggers, log_results  # noqa: F401 - the tasks' one import point

log = logging.getLogger(__name__)


def run_dir(cfg: DictConfig) -> Path:
    """The run's output directory: Hydra's run/sweep dir, or ``cfg.run_dir`` when set (resume an earlier run)."""
    if cfg.get("run_dir"):
        path = Path(cfg.run_dir)
    elif HydraConfig.initialized():
        path = Path(HydraConfig.get().runtime.output_dir)
    else:
        path = Path(cfg.paths.output_dir) / str(cfg.get("task_name", "run"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_config(cfg: DictConfig, out_dir: Path) -> None:
    """The composed config, also when the task runs through the compose API (no .hydra/ folder then)."""
    target = out_dir / "config.yaml"
    target.write_text(OmegaConf.to_yaml(cfg, resolve=False))


def seed_everything(seed: int) -> None:
    import lightning

    lightning.seed_everything(int(seed), workers=True, verbose=False)


def build_trainer(cfg: DictConfig, out_dir: Path, loggers=None, **overrides):
    import lightning

    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.pop("_target_", None)
    kwargs.update(overrides)
    return lightning.Trainer(default_root_dir=str(out_dir), logger=loggers if loggers else False, **kwargs)


def write_metrics(out_dir: Path, metrics: dict) -> Path:
    """metrics.json: a flat name -> number map (plus n_samples), written atomically."""
    clean = {}
    for key, value in metrics.items():
        if torch.is_tensor(value):
            value = value.item()
        if isinstance(value, (int, float, str, bool)) or value is None:
            clean[key] = value
    return atomic_write_text(out_dir / "metrics.json", json.dumps(clean, indent=1, sort_keys=True))


def atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def start_run(cfg: DictConfig, stage: str):
    """The opening of every data-driven task: run directory, saved config, seed, and the data module, set up so that
    its whole layout is validated before any model is built. Returns (out_dir, datamodule)."""
    validate(cfg)   # also on the compose-API path; the CLI has checked already
    out_dir = run_dir(cfg)
    save_config(cfg, out_dir)
    seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return out_dir, datamodule
