"""Lightning callbacks that know the run folder (``i2am.runs.RunDir``)."""
from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint

from i2am.runs import RunDir


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` into the run folder's ``checkpoints/``: ``last.ckpt`` at every save and, with
    ``keep_all``, a ``step=<N>.ckpt`` beside it (the run's folder is the trainer's ``default_root_dir``)."""

    def __init__(self, every_n_train_steps: int = 50, keep_all: bool = False):
        super().__init__(dirpath=None, filename=RunDir.step_checkpoint_pattern, auto_insert_metric_name=False,
                         save_last=True, save_top_k=-1 if keep_all else 0,
                         every_n_train_steps=every_n_train_steps, enable_version_counter=False)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.dirpath = str(RunDir(trainer.default_root_dir).checkpoint_dir)
        super().setup(trainer, pl_module, stage)
