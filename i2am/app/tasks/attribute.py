"""`i2am attribute`: sample a dataset under capture; write samples/, maps/, per-sample metrics and metrics.json."""
from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from i2am._testing_hooks import sample_done_hook
from i2am.app.attribution_module import AttributionModule
from i2am.app.evaluator_fit import adapter_fit, fit_evaluators
from i2am.app.tasks.common import build_loggers, build_trainer, finish_loggers, log_results, start_run
from i2am.engine import CaptureConfig
from i2am.viz.figures import SamplePanels

log = logging.getLogger(__name__)


def build_adapter(model_cfg: DictConfig):
    """The adapter of ``conf/model/<name>.yaml`` (``create_model``), with ``model.checkpoint`` loaded when set."""
    adapter = instantiate(model_cfg)
    if model_cfg.get("checkpoint"):
        log.info("%s: loaded %s", model_cfg.name, model_cfg.checkpoint)
    return adapter.eval().requires_grad_(False)


def build_capture(cfg: DictConfig, adapter) -> CaptureConfig:
    """``cfg.capture`` instantiated; ``sram_layers: auto`` is the adapter's ``default_sram_layers()``."""
    if cfg.capture.get("sram_layers") == "auto":
        return instantiate(cfg.capture, sram_layers=list(adapter.default_sram_layers()), _convert_="all")
    return instantiate(cfg.capture, _convert_="all")


def log_resume(run_dir, total: int) -> None:
    """A restarted run says what it skips (finished samples carry a done-marker, docs/runs.md)."""
    done = min(len(run_dir.sample_records()), total)
    if done:
        log.info("attribute: %d of %d samples done, resuming with %d", done, total, total - done)


def run(cfg: DictConfig) -> dict:
    run_dir, datamodule = start_run(cfg, stage="predict")   # data validated before any model is built
    adapter = build_adapter(cfg.model)   # Lightning moves it to the trainer's device
    render = OmegaConf.to_container(cfg.render, resolve=True)
    specs, notes = fit_evaluators(cfg, adapter_fit(adapter, cfg.data))   # before the first batch
    for note in notes:
        log.info("evaluators: %s", note)
    evaluators = {name: instantiate(spec) for name, spec in specs.items()}
    sampler = instantiate(cfg.sampler, seed=cfg.seed, _convert_="all")
    module = AttributionModule(adapter, sampler, build_capture(cfg, adapter), run_dir, evaluators=evaluators,
                               render=render, g2r_region=cfg.get("g2r_region"), save_maps=cfg.save_maps,
                               writers=[SamplePanels(run_dir, cfg.num_figures, render["preset"])],
                               on_sample_done=sample_done_hook())
    run_dir.save_config(cfg, ran=module.plan.config_values())   # the steps, guidance, ... the model's defaults chose
    log_resume(run_dir, len(datamodule.dataset))
    loggers = build_loggers(cfg, run_dir)
    try:
        trainer = build_trainer(cfg, run_dir, loggers, enable_checkpointing=False)
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
        metrics = module.final_metrics
        if trainer.is_global_zero:
            run_dir.write_metrics(metrics)
            log_results(loggers, cfg, metrics, images=run_dir.figures(), table=run_dir.sample_records())
    finally:
        finish_loggers(loggers)
    log.info("attribute: %s -> %s", metrics, run_dir.path)
    return metrics
