"""Held-out quality of a toy checkpoint: generate toy test pairs with the documented sampler settings and score
them against the ground truth and against the mean-colour fill (docs/toy_world.md)."""
from __future__ import annotations

from pathlib import Path

import torch

from i2am.data import schema
from i2am.data.datamodules import VitonHDDataModule
from i2am.data.toy.vitonhd import DEFAULT_WORLD
from i2am.measures.quality import repaint
from i2am.measures.tryon_baselines import mean_colour_fill, paired_ssim
from i2am.sampling.sampler import Sampler

# The documented sampler settings of the shipped toy checkpoints (the custom model's own DDIM with its per-step paste)
SAMPLER = {"scheduler": "custom_ddim", "num_steps": 20, "guidance": 2.0, "seed": 0}
TOY_WORLD = {"n_train": 256, "n_test": 16, "seed": 0}   # conf/data/toy_vitonhd.yaml's toy world


def heldout_batch(data_dir: str | Path, count: int = 4, world: str = DEFAULT_WORLD) -> dict:
    """The first ``count`` pairs of the test split of the toy world version ``world`` under ``data_dir`` (written
    there on first use: ``toy_vitonhd/`` for the default world, ``toy_vitonhd_<world>/`` for another)."""
    folder = "toy_vitonhd" if world == DEFAULT_WORLD else f"toy_vitonhd_{world}"
    datamodule = VitonHDDataModule(root=str(Path(data_dir) / folder), split="test", size=(128, 96),
                                   extras=["agnostic", "densepose"], limit=count, auto_write_toy=True,
                                   toy={**TOY_WORLD, "world": world}, batch_size=count)
    datamodule.prepare_data()
    datamodule.setup("predict")
    return next(iter(datamodule.predict_dataloader()))


@torch.no_grad()
def heldout_scores(model, batch: dict, sampler: dict | None = None) -> dict[str, torch.Tensor]:
    """Per-sample SSIM to the ground truth of the generated image (``ssim``), of the generated try-on region pasted
    into the ground truth (``ssim_region``) and of the mean-colour fill (``ssim_mean_colour``), each [B]."""
    images = model.sample(batch, sampler=Sampler(**{**SAMPLER, **(sampler or {})}))["images"].clamp(-1, 1)
    target, region = batch[schema.IMAGE], batch[schema.INPAINT_MASK]
    fill = mean_colour_fill(target, batch[schema.REFERENCE], batch[schema.REFERENCE_MASK], region)
    return {"ssim": paired_ssim(images, target), "ssim_region": paired_ssim(repaint(images, target, region), target),
            "ssim_mean_colour": paired_ssim(fill, target), "images": images}
