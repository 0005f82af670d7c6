"""``i2am.trace(pipe)`` for image-to-video pipelines whose denoiser is a ``WanTransformer3DModel``
(``WanImageToVideoPipeline``, Wan 2.1).

Wan's second attention of every block (``attn2``) attends to two conditionings with one query and two softmaxes: the
last 512 context tokens are text (keys ``to_k`` then ``norm_k``), the tokens before them the reference image's CLIP
tokens (keys ``add_k_proj`` then ``norm_added_k``), and the two outputs are added. Each is one relation: "text" and
"image:reference" (G2R over the CLIP tokens as one row: CLS, then the patch grid in row-major order). q and k are read
after the layer's own RMS norms across heads, so the scores use exactly what the processor attends with.

The reference also enters through the transformer's input channels (its VAE latent, concatenated to the noisy
latents as the first frame's condition); no attention map sees that path (docs/video_maps.md).

The pipeline runs CFG as two transformer calls per step, ``cache_context("cond")`` then ``"uncond"``: the trace reads
the name of each call and records only the conditional one (one step per conditional call). The maps are video maps:
R2G over (frame, h, w), G2R per generated frame (docs/video_maps.md).
"""
from __future__ import annotations

from contextlib import contextmanager

from i2am.engine import AttributionCapture, AttributionMaps, CaptureConfig
from i2am.engine.hooks import Hooks
from i2am.engine.layers import LayerSpec
from i2am.tracing.unet import PipelineSource, PipelineTrace

# SkyReels-V2's image-to-video transformer is Wan 2.1's: the same blocks, attention and CFG calls
VIDEO_TRANSFORMERS = ("WanTransformer3DModel", "SkyReelsV2Transformer3DModel")
# compute q, k through the layer's own modules (so hooks see them)
WAN_PROCESSORS = ("WanAttnProcessor", "SkyReelsV2AttnProcessor")


def wan_layer_specs(transformer) -> list[LayerSpec]:
    """The image and text key streams of every block's ``attn2``, named ``<relation>/blocks.<i>.attn2``."""
    specs = []
    for index, block in enumerate(transformer.blocks):
        attn, path = block.attn2, f"blocks.{index}.attn2"
        kind = type(attn.processor).__name__
        if kind not in WAN_PROCESSORS:
            raise ValueError(f"i2am.trace: transformer.{path} runs processor {kind}, whose keys i2am cannot see; "
                             f"supported: {list(WAN_PROCESSORS)} (diffusers' default, attn.set_processor(...))")
        common = dict(module=attn, ref_grid="row", group="transformer", query_module=attn.norm_q, qk_normed=True)
        if attn.add_k_proj is not None:
            specs.append(LayerSpec(name=f"image:reference/{path}", key_module=attn.norm_added_k,
                                   relation="image:reference", **common))
        specs.append(LayerSpec(name=f"text/{path}", key_module=attn.norm_k, relation="text", **common))
    if not any(s.relation == "image:reference" for s in specs):
        raise ValueError("i2am.trace: this WanTransformer3DModel has no image cross-attention (added_kv_proj_dim "
                         "is None, as in Wan 2.2): its reference enters only through the input channels, which no "
                         "attention map sees")
    return specs


class VideoPipelineTrace(PipelineTrace):
    """``PipelineTrace`` for a Wan transformer: see the module docstring."""

    def __init__(self, pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None):
        transformer = getattr(pipe, "transformer", None)
        if type(transformer).__name__ not in VIDEO_TRANSFORMERS:
            raise ValueError(f"i2am.trace: {type(pipe).__name__}.transformer is {type(transformer).__name__}; the "
                             f"video trace reads {list(VIDEO_TRANSFORMERS)}")
        if getattr(pipe, "transformer_2", None) is not None:
            raise ValueError(f"i2am.trace: {type(pipe).__name__} has a second (low-noise) transformer, as in Wan 2.2; "
                             f"its reference has no image cross-attention to trace")
        self._call_name: str | None = None
        self._skipped_uncond = False
        super().__init__(pipe, capture, num_steps=num_steps)

    def _find_layers(self, per_token: bool) -> list:
        return wan_layer_specs(self.pipe.transformer)

    def _step_module(self):
        return self.pipe.transformer

    def _install(self, hooks: Hooks) -> None:
        super()._install(hooks)
        original = self.pipe.transformer.cache_context

        @contextmanager
        def cache_context(name, **kwargs):
            self._call_name = name
            try:
                with original(name, **kwargs):
                    yield
            finally:
                self._call_name = None

        hooks.replace(self.pipe.transformer, "cache_context", cache_context)

    def _records_call(self) -> bool:
        if self._call_name == "uncond":
            self._skipped_uncond = True
            return False
        return True

    def _new_capture(self, cfg: CaptureConfig) -> AttributionCapture:
        self._skipped_uncond = False
        return AttributionCapture(PipelineSource(self.pipe, self._layers, self._step_module()), cfg,
                                  conditional=self.conditional, records_call=self._records_call)

    def _maps_of(self, capture: AttributionCapture) -> AttributionMaps:
        maps = super()._maps_of(capture)
        if self._skipped_uncond:
            maps.meta["cfg_layout"] = "separate calls: cond recorded, uncond skipped"
        maps.meta["video"] = {"temporal_ratio": int(self.pipe.vae_scale_factor_temporal),
                              "spatial_ratio": int(self.pipe.vae_scale_factor_spatial)
                              * int(self.pipe.transformer.config.patch_size[-1])}
        return maps
