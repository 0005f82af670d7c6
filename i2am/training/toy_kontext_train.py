"""Training of the toy Kontext-style transformer (``i2am.adapters.toy_kontext``) on the toy world as a LightningModule
(``i2am train_toy_kontext``, conf/train_toy_kontext.yaml; docs/dit_editors.md).

Every random draw of step i (the batch, the times, the noise) comes from a generator seeded with (seed, i), i being the
trainer's global step, so a run resumed from its ``checkpoints/last.ckpt`` continues exactly as an uninterrupted one;
the draws do not depend on the data loader, which only counts the steps.
"""
from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from i2am.adapters.toy_kontext import IMAGE_SIZE, ToyKontextPairs, build_toy_kontext, encode_pairs, training_losses
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset
from i2am.errors import UserError

# The shipped toy Kontext model's world: the first toy world (garment_uv), which it was trained on before body_surface
# existed; kept in its own folder beside the default world's (docs/dit_editors.md, "Toy-world check").
TOY_WORLD = {"n_train": 256, "n_test": 16, "seed": 0, "world": "garment_uv"}
TOY_FOLDER = "toy_vitonhd_garment_uv"
LOSSES = ("loss", "mse", "correspondence_ce")


def toy_dataset(data_dir: str | Path, split: str, limit: int | None = None, world: dict | None = None
                ) -> VitonHDDataset:
    """The toy world's ``split`` under ``data_dir``/``TOY_FOLDER`` (written there on first use), with the extras the
    toy Kontext model reads. ``world``: ``write_toy_vitonhd`` arguments over ``TOY_WORLD`` (so the world version stays
    the model's unless given); a smaller world holds the same first pairs (sample i depends only on the seed, the
    split and i)."""
    root = Path(data_dir) / TOY_FOLDER
    wanted = {**TOY_WORLD, **(world or {}), "size": list(IMAGE_SIZE)}
    write_toy_vitonhd(root, **wanted)   # at once when that world is there; another world there is refused
    return VitonHDDataset(root, split, "paired", IMAGE_SIZE, ("agnostic", "densepose", "correspondence"), limit)


def load_toy_pairs(data_dir: str | Path, split: str, limit: int | None = None, world: dict | None = None
                   ) -> ToyKontextPairs:
    """``toy_dataset``'s pairs, encoded (``encode_pairs``)."""
    dataset = toy_dataset(data_dir, split, limit, world)
    parts = [encode_pairs(batch) for batch in DataLoader(dataset, batch_size=64)]
    fields = ToyKontextPairs.__dataclass_fields__
    return ToyKontextPairs(**{k: torch.cat([getattr(p, k) for p in parts]) for k in fields})


def draw_step(pairs: ToyKontextPairs, seed: int, step: int, batch_size: int
              ) -> tuple[ToyKontextPairs, torch.Tensor, torch.Tensor]:
    """Step ``step``'s batch of ``pairs``, its times s [B] and its noise, all from one generator seeded by
    (seed, step)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    index = torch.randperm(len(pairs), generator=generator)[:batch_size]
    batch = pairs.select(index)
    s = torch.rand(len(index), generator=generator)
    noise = torch.randn(batch.x0.shape, generator=generator)
    return batch, s, noise


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The transformer's weights in a Lightning checkpoint of :class:`ToyKontextTraining`."""
    prefix = "model."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def export_weights(checkpoint: dict, path: str | Path) -> Path:
    """The checkpoint's model as a float16 safetensors file (what ``i2am/pretrained/toy_kontext/`` ships)."""
    from safetensors.torch import save_file

    save_file({k: v.half().contiguous() for k, v in model_state(checkpoint).items()}, str(path))
    return Path(path)


class ToyKontextTraining(L.LightningModule):
    """FLUX's rectified flow plus the toy correspondence cross-entropy (``training_losses``) on ``pairs``, AdamW at
    ``lr``. One training step per loader item (the loader counts ``steps``); ``last`` holds the latest losses and
    ``train_seconds`` the time spent training over every session of the run."""

    def __init__(self, pairs: ToyKontextPairs, steps: int, batch_size: int = 8, lr: float = 1e-3,
                 correspondence_weight: float = 1.0, seed: int = 0):
        super().__init__()
        self.save_hyperparameters(ignore=["pairs", "steps"])   # what a resumed run must share with its checkpoint
        self.pairs, self.steps = pairs, int(steps)
        self.model = build_toy_kontext(seed)
        self.last: dict[str, float] = {}
        self.train_seconds = 0.0
        self._started = None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(range(self.steps), batch_size=None)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.hparams.lr)

    def on_train_start(self) -> None:
        self._started = time.perf_counter() - self.train_seconds

    def training_step(self, tick, batch_idx: int) -> torch.Tensor:
        hp = self.hparams
        batch, s, noise = draw_step(self.pairs, hp.seed, self.global_step, hp.batch_size)
        losses = training_losses(self.model, batch, s, noise, hp.correspondence_weight)
        self.last = {k: float(losses[k].detach()) for k in LOSSES}
        self.log_dict({f"train/{k}": v for k, v in self.last.items()}, prog_bar=True)
        return losses["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.train_seconds = time.perf_counter() - self._started

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["toy_kontext"] = {"last": self.last, "train_seconds": self.train_seconds}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        stored = {k: checkpoint["hyper_parameters"].get(k) for k in self.hparams}
        if stored != dict(self.hparams):
            raise UserError(f"the run's checkpoint was written with {stored}, this run asks for {dict(self.hparams)}; "
                            f"use another run folder (run_dir=) or the same settings (only steps may change)")
        extra = checkpoint.get("toy_kontext", {})
        self.last, self.train_seconds = dict(extra.get("last", {})), float(extra.get("train_seconds", 0.0))
