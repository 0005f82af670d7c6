"""``i2am.trace(pipe)`` for image-to-video pipelines whose denoiser is a Wan transformer: ``WanImageToVideoPipeline``
(Wan 2.1, ``WanTransformer3DModel``) and the ChronoEdit editor (``ChronoEditTransformer3DModel``, the same blocks).

Wan's second attention of every block (``attn2``) attends to two conditionings with one query and two softmaxes: the
last 512 context tokens are text (keys ``to_k`` then ``norm_k``), the tokens before them the reference image's CLIP
tokens (keys ``add_k_proj`` then ``norm_added_k``), and the two outputs are added. Each is one relation: "text" and
"image:reference" (G2R over the CLIP tokens as one row: CLS, then the patch grid in row-major order). q and k are read
after the layer's own RMS norms across heads, so the scores use exactly what the processor attends with.

The reference also enters through the transformer's input channels (its VAE latent, concatenated to the noisy
latents as the first frame's condition); no attention map sees that path (docs/video_maps.md).

Both pipelines run CFG as two transformer calls per step, the conditional one first: the trace records the first
transformer call after each ``scheduler.step`` (and after the latents are prepared) and skips the others. The maps
are video maps: R2G over (frame, h, w), G2R per generated frame (docs/video_maps.md); a call whose latent frame count
changes mid-sampling (ChronoEdit's temporal reasoning for some steps) is refused.
"""
from __future__ import annotations

from i2am.engine import AttributionCapture, AttributionMaps, CaptureConfig
from i2am.engine.hooks import Hooks
from i2am.engine.wan_layers import VIDEO_TRANSFORMERS, WAN_PROCESSORS, wan_layer_specs
from i2am.tracing.unet import PipelineSource, PipelineTrace

__all__ = ["SEPARATE_CFG_CALLS", "VIDEO_TRANSFORMERS", "WAN_PROCESSORS", "VideoPipelineTrace", "video_meta",
           "wan_layer_specs"]

SEPARATE_CFG_CALLS = "separate calls: the first (cond) recorded, the uncond skipped"


def video_meta(pipe) -> dict:
    """``maps.meta["video"]`` of a video pipeline's maps: the video frames (temporal) and pixels (spatial) one latent
    cell spans, the VAE's compression times the transformer's patch."""
    config = pipe.transformer.config
    patch = config.patch_size
    patch_t, patch_s = (patch[0], patch[-1]) if isinstance(patch, (tuple, list)) else (config.patch_size_t, patch)
    return {"temporal_ratio": int(pipe.vae_scale_factor_temporal) * int(patch_t),
            "spatial_ratio": int(pipe.vae_scale_factor_spatial) * int(patch_s)}


class VideoPipelineTrace(PipelineTrace):
    """``PipelineTrace`` for a Wan transformer: see the module docstring. A subclass for another video transformer
    (``i2am.tracing.ltx2``) names its ``transformers``, its ``skipped_calls`` note (``meta["cfg_layout"]`` when a
    call was skipped; ``{layout}``: the recorded chunk), the ``latent_grid(args, kwargs)`` of a transformer fed packed
    tokens (``AttributionCapture``) and how it tells the recorded calls (``_watch_steps``, ``_on_transformer_call``,
    ``_records_call``)."""

    transformers = VIDEO_TRANSFORMERS
    skipped_calls = SEPARATE_CFG_CALLS
    latent_grid = None   # Wan's transformer takes 5-D latents [B, C, F, H, W]

    def __init__(self, pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None):
        transformer = getattr(pipe, "transformer", None)
        if type(transformer).__name__ not in self.transformers:
            raise ValueError(f"i2am.trace: {type(pipe).__name__}.transformer is {type(transformer).__name__}; the "
                             f"video trace reads {list(self.transformers)}")
        if getattr(pipe, "transformer_2", None) is not None:
            raise ValueError(f"i2am.trace: {type(pipe).__name__} has a second (low-noise) transformer, as in Wan 2.2; "
                             f"its reference has no image cross-attention to trace")
        self._calls_this_step = 0
        self._skipped_uncond = False
        self._frames: int | None = None   # latent frames of the pipeline call in progress
        super().__init__(pipe, capture, num_steps=num_steps)

    def _find_layers(self, per_token: bool) -> list:
        return wan_layer_specs(self.pipe.transformer)

    def _step_module(self):
        return self.pipe.transformer

    def _install(self, hooks: Hooks) -> None:
        super()._install(hooks)
        # registered before each call's capture: the capture's step hook then reads this call's rank in its step
        hooks.hook(self.pipe.transformer, self._on_transformer_call, pre=True, with_kwargs=True)
        self._watch_steps(hooks)

    def _watch_steps(self, hooks: Hooks) -> None:
        """Count the transformer calls of each step: the count restarts at every ``scheduler.step``."""
        original = self.pipe.scheduler.step

        def step(*args, **kwargs):
            self._calls_this_step = 0
            return original(*args, **kwargs)

        hooks.replace(self.pipe.scheduler, "step", step)

    def _start_call(self) -> None:
        self._calls_this_step, self._frames = 0, None
        super()._start_call()

    def _on_transformer_call(self, module, args, kwargs) -> None:
        latents = args[0] if args else kwargs["hidden_states"]
        if self._frames is None:
            self._frames = latents.shape[2]
        elif latents.shape[2] != self._frames:
            raise ValueError(f"i2am.trace: {self.pipeline_class} changed the latent frames from {self._frames} to "
                             f"{latents.shape[2]} within one call (ChronoEdit's temporal reasoning for some steps); "
                             f"video maps need one frame count per call: trace it with num_temporal_reasoning_steps=0")
        self._calls_this_step += 1

    def _records_call(self) -> bool:
        if self._calls_this_step > 1:   # the unconditional call of a CFG step
            self._skipped_uncond = True
            return False
        return True

    def _new_capture(self, cfg: CaptureConfig) -> AttributionCapture:
        self._skipped_uncond = False
        source = PipelineSource(self.pipe, self._layers, self._step_module(), records_call=self._records_call)
        return AttributionCapture(source, cfg, conditional=self.conditional, latent_grid=self.latent_grid)

    def _maps_of(self, capture: AttributionCapture) -> AttributionMaps:
        maps = super()._maps_of(capture)
        if self._skipped_uncond:
            maps.meta["cfg_layout"] = self.skipped_calls.format(layout=self._layout)
        maps.meta["video"] = self._video_meta()
        return maps

    def _video_meta(self) -> dict:
        return video_meta(self.pipe)
