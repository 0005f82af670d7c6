"""`i2am evaluate_toy_kontext`: the toy-world localisation check of the joint-attention capture on a toy Kontext
model (i2am.training.toy_kontext_check); writes figures.json (and figure.png) in the run folder."""
from __future__ import annotations

import json
import logging

from omegaconf import DictConfig, OmegaConf

from i2am.adapters.toy_kontext import build_toy_kontext
from i2am.app.tasks.common import run_dir
from i2am.errors import UserFileError
from i2am.pretrained import TOY_KONTEXT
from i2am.runs import atomic_write_text
from i2am.training.toy_kontext_check import capture_srams, check_figures, load_toy_kontext
from i2am.training.toy_kontext_train import load_toy_pairs, toy_dataset
from i2am.viz.toy_kontext import draw_normalisations

log = logging.getLogger(__name__)


def flat(figures: dict, prefix: str = "") -> dict:
    """``{"trained/i2am": {"loc_err": x}}`` -> ``{"trained/i2am/loc_err": x}``."""
    out = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run(cfg: DictConfig) -> dict:
    weights = cfg.weights or TOY_KONTEXT
    try:
        model = load_toy_kontext(weights)
    except FileNotFoundError as err:
        raise UserFileError(f"weights={weights} not found: give a .safetensors file or a train_toy_kontext run's "
                            f"checkpoints/last.ckpt (null = the shipped model)") from err
    world = OmegaConf.to_container(cfg.world, resolve=True)
    pairs = load_toy_pairs(cfg.paths.data_dir, "test", limit=cfg.pairs, world=world)
    figures = check_figures(model, build_toy_kontext(), pairs, cfg.num_steps, cfg.seed)
    run = run_dir(cfg)
    atomic_write_text(run.path / "figures.json", json.dumps(figures, indent=2) + "\n")
    if cfg.figure:
        one = pairs.select(slice(cfg.figure_pair, cfg.figure_pair + 1))
        raw = toy_dataset(cfg.paths.data_dir, "test", world=world)[cfg.figure_pair]
        draw_normalisations(capture_srams(model, one, cfg.num_steps, cfg.seed), one, raw, run.figure_file("figure"),
                            cfg.num_steps)
    log.info("evaluate_toy_kontext: %s -> %s", weights, run.path / "figures.json")
    return flat(figures)
