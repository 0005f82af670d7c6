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


def build_loggers(cfg: DictConfig, out_dir: Path) -> list:
    """CSV always, plus whatever ``cfg.logger`` adds (wandb offline by default, TensorBoard)."""
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        loggers.append(instantiate(spec, save_dir=str(out_dir)))
        log.info("logger %s -> %s", name, out_dir)
    return loggers


def build_trainer(cfg: DictConfig, out_dir: Path, loggers=None, **overrides):
    import lightning

    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.pop("_target_", None)
    kwargs.update(overrides)
    return lightning.Trainer(default_root_dir=str(out_dir), logger=loggers if loggers else False, **kwargs)


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
    """The opening of every data-driven task: run directory, saved config, seed, and the data module, set up so that
    its whole layout is validated before any model is built. Returns (out_dir, datamodule)."""
    out_dir = run_dir(cfg)
    save_config(cfg, out_dir)
    seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup(stage)
    return out_dir, datamodule
