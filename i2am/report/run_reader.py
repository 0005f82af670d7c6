"""Read a finished attribute run directory: its config, metrics, generated images, raw maps and (through the run's own
data config) the inputs each sample was conditioned on."""
from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from i2am.engine import AttributionMaps
from i2am.runs import RunDir, safe_name

log = logging.getLogger(__name__)


class AttributeRun:
    """One run directory as written by ``i2am attribute`` (config.yaml, metrics.json, samples/, maps/, metrics/)."""

    def __init__(self, path: str | Path):
        self.run = RunDir(path)
        self.path = self.run.path
        if not self.run.is_finished():
            raise FileNotFoundError(f"{self.path} is not a finished run: metrics.json is missing")

    @property
    def name(self) -> str:
        return self.run.name

    @cached_property
    def config(self) -> DictConfig | None:
        return self.run.load_config()

    @cached_property
    def metrics(self) -> dict:
        return self.run.read_metrics()

    @property
    def sample_ids(self) -> list[str]:
        """Ids of the samples that have both an image and maps, in sorted order."""
        return self.run.sample_ids()

    def sample_metrics(self, sample_id: str) -> dict:
        return self.run.sample_record(sample_id)

    def generated(self, sample_id: str) -> np.ndarray:
        """The generated image, [H, W, 3] uint8."""
        return np.asarray(Image.open(self.run.sample_image(sample_id)).convert("RGB"))

    def maps(self, sample_id: str) -> AttributionMaps:
        return AttributionMaps.load(self.run.sample_maps(sample_id))

    def inputs(self, sample_ids: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        """sample id (file-safe form) -> that sample's dataset item (reference, agnostic, masks, ...), read through
        the run's data config. Empty when the run has no config or its data is gone (the report then shows the maps
        without their inputs)."""
        if self.config is None or "data" not in self.config:
            return {}
        from hydra.utils import instantiate

        from i2am.data import schema

        try:
            datamodule = instantiate(self.config.data, batch_size=1)
            datamodule.setup("predict")
        except (FileNotFoundError, OSError, ValueError) as err:
            log.warning("report: the inputs of %s cannot be read (%s); panels show the maps only", self.path, err)
            return {}
        wanted, found = set(sample_ids), {}
        for index in range(len(datamodule.dataset)):
            item = datamodule.dataset[index]
            key = safe_name(str(item[schema.SAMPLE_ID]))
            if key in wanted:
                found[key] = item
                if len(found) == len(wanted):
                    break
        return found

    def views(self, count: int | None = None, read_inputs: bool = True) -> list:
        """The first ``count`` samples as ``i2am.viz.panels.SampleView`` (maps, images, inputs)."""
        from i2am.viz.panels import SampleView

        ids = self.sample_ids[:count]
        inputs = self.inputs(ids) if read_inputs and ids else {}
        data = self.config.get("data", {}) if self.config is not None else {}
        paired = data.get("mode", "paired") == "paired"
        return [SampleView.from_inputs(i, self.maps(i), self.generated(i), inputs.get(i), paired) for i in ids]
