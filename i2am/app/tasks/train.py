"""`i2am train`: train the paper's custom try-on model (docs/method.md §6); writes checkpoints/last.ckpt, metrics.json.

Stage "custom" is ``attention_loss=none`` (MSE only); stage "refined" starts from the custom run's weights
(``init_from=<run>/checkpoints/last.ckpt``) with ``attention_loss=paper``. A run started again on the same directory
(``run_dir=<run>``) resumes from its ``checkpoints/last.ckpt``: weights, optimizer state and global step.
"""
from __future__ import annotations

import logging
import warnings

from hydra.utils import instantiate
from omegaconf import DictConfig

from i2am.app.tasks.common import build_callbacks, build_loggers, build_trainer, finish_loggers, start_run

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    run_dir, datamodule = start_run(cfg, stage="fit")   # data validated before any model is built
    adapter = instantiate(cfg.model)
    resume = run_dir.last_checkpoint()
    if resume is not None:
        log.info("train: resuming from %s", resume)
    elif cfg.get("init_from"):
        report = adapter.load_checkpoint(cfg.init_from, strict=True, trusted=bool(cfg.model.get("trusted", False)))
        log.info("train: weights from %s (%s)", cfg.init_from, report.summary())
    module = instantiate(cfg.module, model=adapter)
    loggers = build_loggers(cfg, run_dir)
    try:
        trainer = build_trainer(cfg, run_dir, loggers, callbacks=build_callbacks(cfg))
        with warnings.catch_warnings():   # the frozen VAE and reference encoder are in eval mode on purpose;
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")    # training has no val loop
            warnings.filterwarnings("ignore", message=r".*val_dataloader.* but have no `validation_step`")
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        final = run_dir.last_checkpoint_file
        trainer.save_checkpoint(final, weights_only=False)   # the final state, whatever the checkpoint period
        metrics = {**module.final_metrics(), "global_step": trainer.global_step, "checkpoint": str(final),
                   "resumed": resume is not None, "attention_loss": cfg.attention_loss.name}
        if trainer.is_global_zero:
            run_dir.write_metrics(metrics)
    finally:
        finish_loggers(loggers)
    log.info("train: %s -> %s", metrics, run_dir.path)
    return metrics
