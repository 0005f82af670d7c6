"""`i2am train_toy_kontext`: train the toy Kontext-style transformer (i2am.training.toy_kontext_train) on the toy
world; writes checkpoints/last.ckpt and metrics.json. A run started again on its folder (``run_dir=<run>``) resumes
from its last.ckpt exactly."""
from __future__ import annotations

import logging
import warnings

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from i2am.app.config_schema import validate
from i2am.app.tasks.common import build_callbacks, build_trainer, run_dir, seed_everything
from i2am.training.toy_kontext_train import load_toy_pairs

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    validate(cfg)
    run = run_dir(cfg)
    run.save_config(cfg)
    seed_everything(cfg.seed)
    pairs = load_toy_pairs(cfg.paths.data_dir, "train", world=OmegaConf.to_container(cfg.world, resolve=True))
    module = instantiate(cfg.module, _partial_=True)(pairs=pairs, steps=cfg.steps)   # pairs: no config node
    resume = run.last_checkpoint()
    if resume is not None:
        log.info("train_toy_kontext: resuming from %s", resume)
    trainer = build_trainer(cfg, run, callbacks=build_callbacks(cfg))
    with warnings.catch_warnings():   # the loader only counts steps; the draws follow the restored global step
        warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable")
        trainer.fit(module, ckpt_path=resume)
    trainer.save_checkpoint(run.last_checkpoint_file, weights_only=False)   # the final state, whatever the period
    metrics = {**module.last, "global_step": trainer.global_step, "train_seconds": module.train_seconds,
               "threads": torch.get_num_threads(), "checkpoint": str(run.last_checkpoint_file)}
    run.write_metrics(metrics)
    log.info("train_toy_kontext: %s -> %s", metrics, run.path)
    return metrics
