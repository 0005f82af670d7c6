"""The attribution run as a LightningModule predict loop: sample each batch under capture, then hand every finished
sample to the run's evaluators (``i2am.evaluation.evaluator``) and sample writers, knowing none of them by name.

Resumable by construction: a sample is done when its done-marker exists (``RunDir.mark_done``, written last), so a
run restarted on the same folder skips finished samples, and the dataset values are always merged from the
per-sample evaluator states in sorted sample-id order (``i2am.evaluation.state_merge``): a killed-and-restarted run,
a single process and a DDP run all end with the same numbers.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import lightning as L
import torch

from i2am.data import schema
from i2am.data.image_io import save_png, to_uint8_image
from i2am.engine import AttributionMaps, CaptureConfig
from i2am.engine.factory import capture_for
from i2am.engine.render import to_image
from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.evaluation.state_merge import merge_run_states
from i2am.runs import RunDir
from i2am.sampling.plan import SamplingPlan
from i2am.viz.video_samples import save_video

SampleWriter = Callable[[SampleContext], None]   # e.g. i2am.viz.figures.SamplePanels: files beside the maps


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


class AttributionModule(L.LightningModule):
    """adapter: a model adapter; sampler: ``i2am.sampling.sampler.Sampler``; capture: a CaptureConfig template (its
    steps, time groups and CFG layout come from the run's :class:`SamplingPlan`); run: the run folder;
    evaluators: name -> :class:`Evaluator` (conf/evaluator); writers: callables given each finished sample's
    context (figures); render: to_image options (preset, cloth_forcing); g2r_region: batch key of the mask
    restricting the G2R query reduction (the custom model's official choice: ``inpaint_mask``) or None;
    on_sample_done: called with each sample's id once its done-marker is written (the test fault seam,
    ``i2am._testing_hooks``) or None."""

    def __init__(self, adapter, sampler, capture: CaptureConfig, run: RunDir | str | Path,
                 evaluators: Mapping[str, Evaluator] | None = None, writers: Sequence[SampleWriter] = (),
                 render: dict | None = None, g2r_region: str | None = None, save_maps: bool = True,
                 on_sample_done: Callable[[str], None] | None = None):
        super().__init__()
        self.adapter = adapter
        self.plan = SamplingPlan.resolve(sampler, adapter, None if capture.auto_time_groups else
                                         capture.time_groups)   # once per run
        self.sampler = self.plan.pin(sampler)
        self.capture = self.plan.capture_config(capture)   # the run's capture settings
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.evaluators = dict(evaluators or {})
        for name, evaluator in self.evaluators.items():
            if not isinstance(evaluator, Evaluator):
                raise TypeError(f"evaluators.{name}: {type(evaluator).__name__} is not an i2am.evaluation.evaluator."
                                f"Evaluator (its conf/evaluator YAML must name one by _target_)")
            evaluator.local_only()
        self.writers = list(writers)
        self.render = {"preset": "official", "cloth_forcing": False, **(render or {})}
        self.g2r_region = g2r_region
        self.save_maps = save_maps
        self.on_sample_done = on_sample_done
        self.final_metrics: dict = {}

    # -------------------------------------------------------------- the loop
    def predict_step(self, batch: dict, batch_idx: int) -> None:
        ids = [str(s) for s in batch[schema.SAMPLE_ID]]
        todo = [i for i, sid in enumerate(ids) if not self.run.is_done(sid)]
        if not todo:
            return
        batch = sub_batch(batch, todo)
        with capture_for(self.adapter, self.capture) as cap:   # the adapter's own capture, if it has one
            if self.g2r_region:
                cap.set_region_mask(batch[self.g2r_region].to(self.adapter.device))
            out = self.adapter.sample(batch, sampler=self.sampler)
        maps = cap.maps()
        for j, sample_id in enumerate(batch[schema.SAMPLE_ID]):
            self._finish_sample(str(sample_id), sub_batch(batch, [j]), out["images"][j:j + 1].float().cpu(),
                                maps[j])

    def _finish_sample(self, sample_id: str, sample: dict, generated: torch.Tensor, maps: AttributionMaps) -> None:
        image_path = self.run.sample_image(sample_id)
        if generated.dim() == 5:   # a video [1, 3, T, H, W]: its frames as one strip and as an animation
            save_video(generated[0], image_path, image_path.with_suffix(".gif"))
        else:
            save_png(to_uint8_image(generated[0]), image_path)
        if self.save_maps:
            maps.save(self.run.sample_maps(sample_id))
        ctx = SampleContext(sample_id=sample_id, sample=sample, maps=maps, rendered=self.rendered_maps(sample, maps),
                            generated=generated, adapter=self.adapter, sampler=self.sampler,
                            sample_dir=self.run.sample_dir(sample_id), dataset=self._dataset())
        values, states = {}, {}
        for name, evaluator in self.evaluators.items():
            evaluator.reset()
            evaluator.update(ctx)
            values.update({k: float(v) for k, v in evaluator.compute().items()})
            states[name] = evaluator.state()
            evaluator.reset()
        self.run.save_states(sample_id, states)
        for write in self.writers:
            write(ctx)
        self.run.mark_done(sample_id, values)
        if self.on_sample_done is not None:
            self.on_sample_done(sample_id)

    def _dataset(self):
        """The datamodule's dataset (evaluators may read other samples from it), or None outside a Trainer."""
        trainer = self._trainer
        return getattr(trainer.datamodule, "dataset", None) if trainer is not None else None

    def rendered_maps(self, sample: dict, maps: AttributionMaps) -> dict[str, torch.Tensor]:
        """ULAMs at image resolution (R2G on the generated image, G2R on the reference image) with the run's preset;
        a G2R map over tokens (text, IP-Adapter) has no image to be drawn on, so IMACS_r is not computed for it;
        video maps are not rendered (IMACS does not apply to them, ``i2am.app.evaluator_fit``)."""
        preset = self.render["preset"]
        out = {}
        if maps.frames is not None:   # video maps: no image to render them on (the evaluators that fit read the maps)
            return out
        if maps.r2g.available:
            size = tuple(sample[schema.IMAGE].shape[-2:])
            out["r2g"] = to_image(maps.r2g.ulam, size, "r2g", preset)
        if maps.g2r.available and schema.REFERENCE in sample and not maps.g2r_on_tokens:
            size = tuple(sample[schema.REFERENCE].shape[-2:])
            cloth = sample.get(schema.REFERENCE_MASK) if self.render["cloth_forcing"] else None
            out["g2r"] = to_image(maps.g2r.ulam, size, "g2r", preset,
                                  cloth_mask=None if cloth is None else cloth[:, 0].float())
        return out

    # -------------------------------------------------------------- aggregation
    def on_predict_epoch_end(self) -> None:
        self.trainer.strategy.barrier()
        if self.trainer.is_global_zero:
            self.final_metrics = merge_run_states(self.run, self.evaluators)
        self.trainer.strategy.barrier()
