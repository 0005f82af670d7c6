"""Read a finished attribute run directory: its config, metrics, generated images, raw maps and (through the run's own
data config) the inputs each sample was conditioned on."""
from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ..attribution import AttributionMaps

log = logging.getLogger(__name__)


class AttributeRun:
    """One run directory as written by ``i2am attribute`` (config.yaml, metrics.json, samples/, maps/, metrics/)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "metrics.json").is_file():
            raise FileNotFoundError(f"{self.path} is not a finished run: metrics.json is missing")

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> DictConfig | None:
        file = self.path / "config.yaml"
        return OmegaConf.load(file) if file.is_file() else None

    @cached_property
    def metrics(self) -> dict:
        return json.loads((self.path / "metrics.json").read_text())

    @property
    def sample_ids(self) -> list[str]:
        """Ids of the samples that have both an image and maps, in sorted order."""
        maps = {p.name[: -len(".safetensors")] for p in (self.path / "maps").glob("*.safetensors")}
        return sorted(p.stem for p in (self.path / "samples").glob("*.png") if p.stem in maps)

    def sample_metrics(self, sample_id: str) -> dict:
        file = self.path / "metrics" / f"{sample_id}.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def generated(self, sample_id: str) -> np.ndarray:
        """The generated image, [H, W, 3] uint8."""
        return np.asarray(Image.open(self.path / "samples" / f"{sample_id}.png").convert("RGB"))

    def maps(self, sample_id: str) -> AttributionMaps:
        return AttributionMaps.load(self.path / "maps" / f"{sample_id}.safetensors")

    def inputs(self, sample_ids: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        """sample id (file-safe form) -> that sample's dataset item (reference, agnostic, masks, ...), read through
        the run's data config. Empty when the run has no config or its data is gone (the report then shows the maps
        without their inputs)."""
        if self.config is None or "data" not in self.config:
            return {}
        from hydra.utils import instantiate

        from ..data import schema
        from ..lit.attribution import safe_name

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
        """The first ``count`` samples as ``i2am.report.panels.SampleView`` (maps, images, inputs)."""
        from .panels import SampleView

        ids = self.sample_ids[:count]
        inputs = self.inputs(ids) if read_inputs and ids else {}
        return [SampleView.from_inputs(i, self.maps(i), self.generated(i), inputs.get(i)) for i in ids]
