"""``i2am.trace(pipe)`` for diffusion-transformer pipelines (FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit,
LongCat-Image-Edit, JoyImage-Edit, SD3, HunyuanVideo-1.5 image-to-video; the transformers ``i2am.engine.packing``
reads).

The pipeline's ``transformer`` is captured by ``JointAttentionCapture`` (joint attention, token layout from the
pipeline's packing); the rest is ``PipelineTrace``: one capture per call, the step count read at the first step, the
conditional chunk of a stacked CFG batch from the call's latent batch, restoration on exit. Layers are named
``<relation>/<block>`` with relations "text", "image:reference", "image:reference.1", ... and their "share:" twins
(docs/dit_editors.md). A transformer call at the timestep just scored is the negative pass of CFG run as separate
calls (true CFG; HunyuanVideo-1.5's guider runs the conditional call first) and is skipped. A video transformer's
maps are video maps (docs/video_maps.md), with ``meta["video"]``.
"""
from __future__ import annotations

from i2am.engine import AttributionMaps, CaptureConfig
from i2am.engine.joint import NORMALISATIONS, JointAttentionCapture, find_blocks
from i2am.tracing.unet import PipelineTrace
from i2am.tracing.video import SEPARATE_CFG_CALLS, video_meta


class JointPipelineTrace(PipelineTrace):
    def __init__(self, pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None,
                 normalisations=NORMALISATIONS, relations=None):
        if getattr(pipe, "transformer", None) is None:
            raise ValueError(f"i2am.trace: {type(pipe).__name__} has no transformer denoiser")
        self.normalisations = tuple(normalisations)
        self.scored_relations = relations
        super().__init__(pipe, capture, num_steps=num_steps)

    def _find_layers(self, per_token: bool) -> list:
        return find_blocks(self.pipe.transformer)   # raises for unsupported transformers/processors

    def _step_module(self):
        return self.pipe.transformer

    def _new_capture(self, cfg: CaptureConfig) -> JointAttentionCapture:
        return JointAttentionCapture(self.pipe.transformer, cfg, conditional=self.conditional,
                                     normalisations=self.normalisations, model_name=self.pipeline_class,
                                     relations=self.scored_relations)

    def _maps_of(self, capture: JointAttentionCapture) -> AttributionMaps:
        maps = super()._maps_of(capture)
        if capture.skipped_repeats:
            maps.meta["cfg_layout"] = SEPARATE_CFG_CALLS
        if maps.frames is not None:
            maps.meta["video"] = video_meta(self.pipe)
        return maps

    @property
    def relations(self) -> list[str]:
        if not self.calls:
            raise RuntimeError("the relations of a transformer pipeline are known once a call has run "
                               "(they follow its reference images)")
        return self.maps.relations
