"""`i2am attribute`: sample a dataset under capture; write samples/, maps/, per-sample metrics and metrics.json."""
from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..attribution import CaptureConfig
from ..lit.attribution import AttributionModule, sample_table
from ..models.sampler import Sampler
from .common import build_loggers, build_trainer, finish_loggers, log_results, start_run, write_metrics

log = logging.getLogger(__name__)


def build_adapter(model_cfg: DictConfig):
    """The adapter of ``conf/model/<name>.yaml`` (``create_model``), with ``model.checkpoint`` loaded when set."""
    adapter = instantiate(model_cfg)
    if model_cfg.get("checkpoint"):
        log.info("%s: loaded %s", model_cfg.name, model_cfg.checkpoint)
    return adapter.eval().requires_grad_(False)


def build_sampler(cfg: DictConfig) -> Sampler:
    spec = OmegaConf.to_container(cfg.sampler, resolve=True)
    spec.pop("_target_", None)
    spec["seed"] = cfg.seed
    return Sampler(**spec)


def default_sram_layers(adapter) -> tuple[str, ...]:
    """The paper's SRAM layer: decoder cross-attention layer 2 (custom model), warp block 4 (StableVITON), else the
    middle layer among those with spatial reference tokens; none for single-token models."""
    if hasattr(adapter, "decoder_layer_name"):
        return (adapter.decoder_layer_name(2),)
    spatial = [s.name for s in adapter.attribution_layers() if s.ref_grid is not None and not s.mid]
    if hasattr(adapter, "sram_layer"):
        return (adapter.sram_layer,)
    return (spatial[len(spatial) // 2],) if spatial else ()


def capture_config(cfg: DictConfig, adapter) -> CaptureConfig:
    spec = OmegaConf.to_container(cfg.capture, resolve=True)
    spec.pop("_target_", None)
    if spec.get("sram_layers") == "auto":
        spec["sram_layers"] = default_sram_layers(adapter)
    return CaptureConfig(**spec)


def run(cfg: DictConfig) -> dict:
    out_dir, datamodule = start_run(cfg, stage="predict")   # data validated before any model is built
    adapter = build_adapter(cfg.model)   # Lightning moves it to the trainer's device
    sampler = build_sampler(cfg)
    adapter.guidance = sampler.settings(adapter)["guidance"]   # the capture's CFG layout follows the guidance used
    evaluators = {name: instantiate(spec) for name, spec in (cfg.get("evaluators") or {}).items() if spec}
    module = AttributionModule(adapter, sampler, capture_config(cfg, adapter), out_dir, evaluators=evaluators,
                               render=OmegaConf.to_container(cfg.render, resolve=True),
                               g2r_region=cfg.get("g2r_region"), save_maps=cfg.save_maps,
                               num_figures=cfg.num_figures)
    loggers = build_loggers(cfg, out_dir)
    try:
        trainer = build_trainer(cfg, out_dir, loggers, enable_checkpointing=False)
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
        metrics = module.final_metrics
        if trainer.is_global_zero:
            write_metrics(out_dir, metrics)
            log_results(loggers, cfg, metrics, images=sorted((out_dir / "figures").glob("*.png")),
                        table=sample_table(out_dir))
    finally:
        finish_loggers(loggers)
    log.info("attribute: %s -> %s", metrics, out_dir)
    return metrics
