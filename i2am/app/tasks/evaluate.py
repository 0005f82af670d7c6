"""`i2am evaluate run_dir=<attribute run>`: generation quality of a finished attribute run against its ground truth.

FID/KID compare the run's outputs with the real images of the same split (the protocol's unpaired setting); SSIM and
LPIPS compare each output with its own ground truth and are computed for paired runs only (docs/method.md §4.4). The
numbers are merged into the run's metrics.json.
"""
from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from i2am.app.config_schema import ConfigValueError
from i2am.data import schema
from i2am.data.image_io import read_rgb
from i2am.errors import UserFileError
from i2am.runs import RunDir

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    if not cfg.get("run_dir"):
        raise ConfigValueError("i2am evaluate needs the run to evaluate: add run_dir=<folder of a finished attribute "
                               "run>")
    run = RunDir(cfg.run_dir)
    run_cfg = run.load_config()
    if run_cfg is None:
        raise UserFileError(f"{run.config_file} not found: run_dir={cfg.run_dir} must be the folder of an attribute "
                            f"run")
    evaluator = instantiate(cfg.quality)
    paired = run_cfg.data.get("mode", "paired") == "paired"
    datamodule = instantiate(run_cfg.data, batch_size=cfg.batch_size)
    datamodule.prepare_data()
    datamodule.setup("predict")
    n_generated = 0
    for batch in tqdm(datamodule.predict_dataloader(), desc="quality"):
        evaluator.update_real(batch[schema.IMAGE])
        ids = [str(s) for s in batch[schema.SAMPLE_ID]]
        found = [i for i, sid in enumerate(ids) if run.sample_image(sid).is_file()]
        if not found:
            continue
        generated = torch.stack([read_rgb(run.sample_image(ids[i])) for i in found])
        target, mask = batch[schema.IMAGE][found], batch.get(schema.INPAINT_MASK)
        mask = None if mask is None else mask[found]
        evaluator.update_generated(generated, original=target, inpaint_mask=mask)
        if paired and any(n in evaluator.metric_names for n in ("ssim", "lpips")):
            evaluator.update_paired(generated, target, inpaint_mask=mask)
        n_generated += len(found)
    if n_generated == 0:
        raise UserFileError(f"no generated sample of {run.path} matches the dataset: is samples/ empty?")
    metrics = evaluator.compute()
    if not paired:
        metrics = {k: v for k, v in metrics.items() if not k.startswith(("ssim", "lpips"))}
        log.info("unpaired run: SSIM/LPIPS need paired outputs and are not reported")
    run.update_metrics(metrics)
    log.info("evaluate %s (%d outputs): %s", run.path, n_generated, metrics)
    return {**metrics, "n_generated": n_generated}
