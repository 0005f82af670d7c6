"""``i2am.trace(pipe)`` for diffusion-transformer pipelines (FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit, SD3).

The pipeline's ``transformer`` is captured by ``JointAttentionCapture`` (joint attention, token layout from the
pipeline's packing); the rest is ``PipelineTrace``: one capture per call, the step count read at the first step, the
conditional chunk of a stacked CFG batch from the call's latent batch, restoration on exit. Layers are named
``<relation>/<block>`` with relations "text", "image:reference", "image:reference.1", ... and their "share:" twins
(docs/dit_editors.md).
"""
from __future__ import annotations

from i2am.engine import CaptureConfig
from i2am.engine.joint import NORMALISATIONS, JointAttentionCapture, find_blocks
from i2am.engine.pipelines import conditional_chunks
from i2am.tracing.unet import PipelineTrace


class JointPipelineTrace(PipelineTrace):
    def __init__(self, pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None,
                 normalisations=NORMALISATIONS, relations=None):
        transformer = getattr(pipe, "transformer", None)
        if transformer is None:
            raise ValueError(f"i2am.trace: {type(pipe).__name__} has no transformer denoiser")
        self.pipe = pipe
        self.template = capture or CaptureConfig()
        self.num_steps = num_steps
        self.normalisations = tuple(normalisations)
        self.scored_relations = relations
        self.pipeline_class = type(pipe).__name__
        self._chunks = conditional_chunks(self.pipeline_class)
        self._blocks = find_blocks(transformer)   # raises for unsupported transformers/processors before patching
        self._capture = None
        self._latent_batch = None
        self._finished = []
        self._patched = False
        self._step_hook = None
        self._active = False

    def _start_call(self) -> None:
        self._finish_call()
        transformer = self.pipe.transformer
        capture = JointAttentionCapture(transformer, self._config(self.num_steps or 1), conditional=self.conditional,
                                        normalisations=self.normalisations, model_name=self.pipeline_class,
                                        relations=self.scored_relations)
        self._step_hook = transformer.register_forward_pre_hook(self._on_first_step)
        capture.__enter__()
        self._capture = capture

    @property
    def relations(self) -> list[str]:
        if not self.calls:
            raise RuntimeError("the relations of a transformer pipeline are known once a call has run "
                               "(they follow its reference images)")
        return self.maps.relations

    @property
    def layers(self) -> list[str]:
        return [b.name for b in self._blocks]
