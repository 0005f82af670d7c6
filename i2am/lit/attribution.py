"""The attribution run as a LightningModule predict loop: sample each batch under capture, write images, raw maps and
per-sample metric states, and aggregate the dataset metrics from those files.

Resumable by construction: a sample is done when its ``metrics/<id>.json`` exists (written last, atomically), so a
run restarted on the same directory skips finished samples, and the dataset metrics are always merged from the
per-sample metric states in sorted sample-id order: a killed-and-restarted run, a single process and a DDP run all
end with the same numbers.
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from PIL import Image
from torchmetrics import Metric

from .. import testing_hooks
from ..attribution import AttributionCapture, AttributionMaps, CaptureConfig
from ..attribution.render import to_image
from ..data import schema
from ..models.sampler import Sampler
from ..report.figures import overlay, save_panel, to_uint8_image

log = logging.getLogger(__name__)


def safe_name(sample_id: str) -> str:
    """A file-system-safe, still readable name for a sample id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)


def sub_batch(batch: dict, keep: list[int]) -> dict:
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            out[key] = value[keep]
        elif isinstance(value, (list, tuple)):
            out[key] = [value[i] for i in keep]
        else:
            out[key] = value
    return out


def metric_states(module: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The torchmetrics states inside an evaluator (itself a Metric or a module holding Metrics)."""
    def cpu(value):
        return [v.detach().cpu() for v in value] if isinstance(value, list) else value.detach().cpu()
    return {name: {k: cpu(v) for k, v in m.metric_state.items()}
            for name, m in module.named_modules() if isinstance(m, Metric)}


def local_only(module: torch.nn.Module) -> None:
    """No cross-rank sync in compute(): per-sample values are local, and the dataset values are merged from the
    per-sample state files on rank 0 (the same numbers for 1 or N processes, and across restarts)."""
    for m in module.modules():
        if isinstance(m, Metric):
            m.sync_on_compute = False
            m._to_sync = False


def merge_states(module: torch.nn.Module, states: dict[str, dict[str, torch.Tensor]]) -> None:
    metrics = {name: m for name, m in module.named_modules() if isinstance(m, Metric)}
    for name, state in states.items():
        target = metrics[name]
        target.merge_state({k: [t.to(target.device) for t in v] if isinstance(v, list) else v.to(target.device)
                            for k, v in state.items()})


class AttributionModule(L.LightningModule):
    """adapter: a model adapter; sampler: ``i2am.models.sampler.Sampler``; capture: a CaptureConfig template whose
    num_steps is set from the sampler; evaluators: name -> evaluator (``imacs``, ``localization``) built from
    conf/evaluator; render: to_image options (preset, cloth_forcing); g2r_region: batch key of the mask restricting
    the G2R query reduction (the custom model's official choice: ``inpaint_mask``) or None."""

    def __init__(self, adapter, sampler: Sampler, capture: CaptureConfig, out_dir: str | Path,
                 evaluators: dict | None = None, render: dict | None = None, g2r_region: str | None = None,
                 save_maps: bool = True, num_figures: int = 4):
        super().__init__()
        self.adapter = adapter
        self.sampler = sampler
        self.capture_template = capture
        self.out_dir = Path(out_dir)
        self.evaluators = dict(evaluators or {})
        for evaluator in self.evaluators.values():
            local_only(evaluator)
        self.render = {"preset": "official", "cloth_forcing": False, **(render or {})}
        self.g2r_region = g2r_region
        self.save_maps = save_maps
        self.num_figures = num_figures
        self.figures_written = 0
        self.final_metrics: dict = {}

    # -------------------------------------------------------------- paths
    def _path(self, kind: str, sample_id: str, suffix: str) -> Path:
        return self.out_dir / kind / f"{safe_name(sample_id)}{suffix}"

    def is_done(self, sample_id: str) -> bool:
        return self._path("metrics", sample_id, ".json").is_file()

    def capture_config(self) -> CaptureConfig:
        """The template with the step count (and so the time groups) of the sampler actually used."""
        steps = self.sampler.settings(self.adapter)["num_steps"]
        return replace(self.capture_template, num_steps=steps, time_groups=min(self.capture_template.time_groups, steps))

    # -------------------------------------------------------------- the loop
    def predict_step(self, batch: dict, batch_idx: int) -> None:
        ids = [str(s) for s in batch[schema.SAMPLE_ID]]
        todo = [i for i, sid in enumerate(ids) if not self.is_done(sid)]
        if not todo:
            return
        batch = sub_batch(batch, todo)
        with AttributionCapture(self.adapter, self.capture_config()) as cap:
            if self.g2r_region:
                cap.set_region_mask(batch[self.g2r_region].to(self.adapter.device))
            out = self.adapter.sample(batch, sampler=self.sampler)
        maps = cap.maps()
        for j, sample_id in enumerate(batch[schema.SAMPLE_ID]):
            self._finish_sample(str(sample_id), sub_batch(batch, [j]), out["images"][j:j + 1].float().cpu(),
                                maps[j])

    def _finish_sample(self, sample_id: str, sample: dict, generated: torch.Tensor, maps: AttributionMaps) -> None:
        image_path = self._path("samples", sample_id, ".png")
        image_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8_image(generated[0])).save(image_path)
        if self.save_maps:
            maps.save(self._path("maps", sample_id, ".safetensors"))
        rendered = self.rendered_maps(sample, maps)
        values, states = {}, {}
        for name, evaluator in self.evaluators.items():
            evaluator.reset()
            self.update_evaluator(name, evaluator, sample, maps, rendered, generated)
            values.update({k: float(v) for k, v in evaluator.compute().items()})
            states[name] = metric_states(evaluator)
            evaluator.reset()
        states_path = self._path("metrics", sample_id, ".states.pt")
        states_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(states, states_path.with_name(f".{states_path.name}.{os.getpid()}.tmp"))
        os.replace(states_path.with_name(f".{states_path.name}.{os.getpid()}.tmp"), states_path)
        if self.figures_written < self.num_figures:
            self.figures_written += 1
            self.write_figure(sample_id, sample, generated, rendered)
        record = {"sample_id": sample_id, **values}
        path = self._path("metrics", sample_id, ".json")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)   # the done marker: written last
        testing_hooks.sample_done()

    def rendered_maps(self, sample: dict, maps: AttributionMaps) -> dict[str, torch.Tensor]:
        """ULAMs at image resolution (R2G on the generated image, G2R on the reference image) with the run's preset."""
        preset = self.render["preset"]
        out = {}
        if maps.r2g.available:
            size = tuple(sample[schema.IMAGE].shape[-2:])
            out["r2g"] = to_image(maps.r2g.ulam, size, "r2g", preset)
        if maps.g2r.available and schema.REFERENCE in sample:
            size = tuple(sample[schema.REFERENCE].shape[-2:])
            cloth = sample.get(schema.REFERENCE_MASK) if self.render["cloth_forcing"] else None
            out["g2r"] = to_image(maps.g2r.ulam, size, "g2r", preset,
                                  cloth_mask=None if cloth is None else cloth[:, 0].float())
        return out

    def update_evaluator(self, name: str, evaluator, sample: dict, maps: AttributionMaps, rendered: dict,
                         generated: torch.Tensor) -> None:
        if name == "imacs":
            evaluator.update(r2g_map=rendered.get("r2g"), inpaint_mask=sample.get(schema.INPAINT_MASK),
                             g2r_map=rendered.get("g2r"), reference_mask=sample.get(schema.REFERENCE_MASK))
        elif name == "localization":
            layer = next((k[len("sram/"):] for k in maps.raw if k.startswith("sram/")), None)
            if layer is None or schema.CORRESPONDENCE not in sample:
                raise ValueError("the localization evaluator needs an SRAM layer (capture.sram_layers) and toy data "
                                 "with ground-truth correspondence (data=toy_vitonhd)")
            qh, qw = maps.layer_meta(layer)["query_grid"]
            cells = torch.stack(torch.meshgrid(torch.arange(qh), torch.arange(qw), indexing="ij"), -1).reshape(-1, 2)
            evaluator.update(maps.sram(layer, points=cells), cells, (qh, qw), sample[schema.CORRESPONDENCE],
                             sample[schema.INPAINT_MASK], sample[schema.REFERENCE_MASK],
                             r2g_map=maps.r2g.ulam if maps.r2g.available else None)
        elif name == "detection":
            if "r2g" not in rendered or schema.BBOX not in sample:
                raise ValueError("the detection evaluator needs R2G maps and a dataset with boxes (coco_detection)")
            daam = maps.daam.ulam if maps.daam.available else None
            evaluator.update(rendered["r2g"], sample[schema.BBOX], sample_ids=list(sample[schema.SAMPLE_ID]),
                             daam_map=daam)
        elif name == "sr_quality":
            evaluator.update(generated, sample[schema.IMAGE].float().cpu())
        else:
            raise ValueError(f"attribute: no per-sample rule for evaluator {name!r} "
                             f"(known: imacs, localization, detection, sr_quality)")

    def write_figure(self, sample_id: str, sample: dict, generated: torch.Tensor, rendered: dict) -> None:
        gen = to_uint8_image(generated[0])
        tiles = [("generated", gen)]
        if schema.REFERENCE in sample:
            tiles.insert(0, ("reference", to_uint8_image(sample[schema.REFERENCE][0])))
        for direction, base in (("r2g", gen), ("g2r", tiles[0][1])):
            if direction in rendered:
                attribution = rendered[direction][0]
                if self.render["preset"] == "official":
                    attribution = 1 - attribution   # the official P is scored as 1 - P (Appendix A step 6)
                tiles.append((f"{direction.upper()} ULAM", overlay(base, attribution)))
        save_panel(self._path("figures", sample_id, ".png"), tiles, title=sample_id)

    # -------------------------------------------------------------- aggregation
    def on_predict_epoch_end(self) -> None:
        self.trainer.strategy.barrier()
        if self.trainer.is_global_zero:
            self.final_metrics = aggregate_run(self.out_dir, self.evaluators)
        self.trainer.strategy.barrier()


def aggregate_run(out_dir: Path, evaluators: dict) -> dict:
    """Dataset metrics from every finished sample's metric states, merged in sorted sample-id order."""
    files = sorted((out_dir / "metrics").glob("*.states.pt"))
    done = [f for f in files if f.with_name(f.name.replace(".states.pt", ".json")).is_file()]
    metrics: dict = {"n_samples": len(done)}
    for name, evaluator in evaluators.items():
        evaluator.reset()
        for f in done:
            states = torch.load(f, map_location="cpu", weights_only=True)
            if name in states:
                merge_states(evaluator, states[name])
        if done:
            with warnings.catch_warnings():   # merged states count as no update() call for torchmetrics
                warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
                metrics.update({k: float(v) for k, v in evaluator.compute().items()})
        evaluator.reset()
    return metrics


def sample_table(out_dir: Path) -> list[dict]:
    """Every finished sample's metrics record."""
    return [json.loads(p.read_text()) for p in sorted((Path(out_dir) / "metrics").glob("*.json"))]
