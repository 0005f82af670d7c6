"""`i2am train`: train the paper's custom try-on model (METHOD §6) and write checkpoints/last.ckpt and metrics.json.

Stage "custom" is ``attention_loss=none`` (MSE only); stage "refined" starts from the custom run's weights
(``init_from=<run>/checkpoints/last.ckpt``) with ``attention_loss=paper``. A run started again on the same directory
(``run_dir=<run>``) resumes from its ``checkpoints/last.ckpt``: weights, optimizer state and global step.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ..lit.tryon import TryOnTraining
from .common import build_loggers, build_trainer, finish_loggers, start_run, write_metrics

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def last_checkpoint(out_dir: Path) -> Path | None:
    path = out_dir / CHECKPOINT_DIR / LAST
    return path if path.is_file() else None


def build_module(cfg: DictConfig, adapter) -> TryOnTraining:
    spec = OmegaConf.to_container(cfg.attention_loss, resolve=True)
    return TryOnTraining(adapter, optimizer=instantiate(cfg.optimizer), p_uncond=cfg.p_uncond,
                         loss_layer=spec["layer"], paper_losses=spec.get("paper_losses"),
                         correspondence_weight=spec.get("correspondence_weight", 0.0),
                         diagnostics_every=spec.get("diagnostics_every", 1))


def checkpoint_callback(cfg: DictConfig, out_dir: Path) -> ModelCheckpoint:
    every = cfg.checkpoint.every_n_steps
    return ModelCheckpoint(dirpath=out_dir / CHECKPOINT_DIR, filename="step={step}", auto_insert_metric_name=False,
                           save_last=True, save_top_k=-1 if cfg.checkpoint.keep_all else 0,
                           every_n_train_steps=every, enable_version_counter=False)


def run(cfg: DictConfig) -> dict:
    out_dir, datamodule = start_run(cfg, stage="fit")   # data validated before any model is built
    adapter = instantiate(cfg.model)
    resume = last_checkpoint(out_dir)
    if resume is not None:
        log.info("train: resuming from %s", resume)
    elif cfg.get("init_from"):
        report = adapter.load_checkpoint(cfg.init_from, strict=True)
        log.info("train: weights from %s (%s)", cfg.init_from, report.summary())
    module = build_module(cfg, adapter)
    loggers = build_loggers(cfg, out_dir)
    try:
        trainer = build_trainer(cfg, out_dir, loggers, callbacks=[checkpoint_callback(cfg, out_dir)])
        with warnings.catch_warnings():   # the frozen VAE and reference encoder are in eval mode on purpose;
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")    # training has no val loop
            warnings.filterwarnings("ignore", message=r".*val_dataloader.* but have no `validation_step`")
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        final = out_dir / CHECKPOINT_DIR / LAST
        trainer.save_checkpoint(final, weights_only=False)   # the final state, whatever the checkpoint period
        metrics = {**module.final_metrics(), "global_step": trainer.global_step, "checkpoint": str(final),
                   "resumed": resume is not None, "attention_loss": cfg.attention_loss.name}
        if trainer.is_global_zero:
            write_metrics(out_dir, metrics)
    finally:
        finish_loggers(loggers)
    log.info("train: %s -> %s", metrics, out_dir)
    return metrics
