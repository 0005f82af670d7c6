"""``i2am.trace(pipe)`` for LTX-2 image-to-video: ``LTX2ImageToVideoPipeline`` (``LTX2VideoTransformer3DModel``).

LTX-2 has no separate image conditioning. The pipeline writes the reference's VAE latent into the first latent frame
of the video tokens and keeps it clean: the conditioning mask zeroes that frame's timestep at every step and the
scheduler steps only frames 1..F-1. The generated frames read the reference through the video stream's
self-attention (``attn1`` of every block), beside the audio stream. The relation "image:reference" is that
self-attention with queries the tokens of latent frames 1..F-1 and keys the tokens of latent frame 0
(``LayerSpec.query_frames`` / ``key_frames``): R2G over the generated frames' (F-1, h, w) grid, G2R per generated
frame over the reference frame's (h, w) grid. The relation "text" is the same queries' cross-attention (``attn2``)
to the prompt tokens the text connectors give (G2R over them as one row). The pipeline packs the tokens frame-major
(``_pack_latents``: frame, then row, then column); the latent grid of each call is its ``num_frames``, ``height``,
``width`` arguments.

q and k are read where the processor hands them to ``dispatch_attention_fn`` (``LayerSpec.qk_at_backend``): after
its RMS norms across heads and the rotary embedding, exactly what it attends with. The pipeline gives the video
self-attention no mask, and the text connectors hand ``attn2`` an all-ones one (they handle the prompt's padding
themselves); a call whose mask removes keys of the recorded rows raises.

Transformer calls per step: the first carries CFG as stacked rows [negative, positive] (chunk 1 of 2 is recorded;
one chunk without CFG); then, each on the positive prompt alone, a spatio-temporal-guidance call (``stg_scale > 0``:
the blocks of ``spatio_temporal_guidance_blocks`` perturbed) and a modality-isolation call (``modality_scale > 1``:
no audio-video cross-attention). Only the unperturbed first call is recorded; the trace tells it by its arguments
(no STG blocks, modalities not isolated) rather than by counting calls between ``scheduler.step``s, because the
pipeline deep-copies its scheduler for the audio latents (a patched ``step`` would be copied with it).
"""
from __future__ import annotations

from i2am.engine import CaptureConfig
from i2am.engine.hooks import Hooks
from i2am.engine.ltx2_layers import (
    GENERATED_FRAMES,
    LTX2_PIPELINES,
    LTX2_TRANSFORMERS,
    REFERENCE_FRAMES,
    latent_grid,
    ltx2_layer_specs,
    unperturbed_call,
)
from i2am.tracing.video import VideoPipelineTrace

__all__ = ["GENERATED_FRAMES", "LTX2_PIPELINES", "LTX2_TRANSFORMERS", "REFERENCE_FRAMES", "LTX2PipelineTrace",
           "latent_grid", "ltx2_layer_specs"]


class LTX2PipelineTrace(VideoPipelineTrace):
    """``VideoPipelineTrace`` for LTX-2 image-to-video: see the module docstring."""

    transformers = LTX2_TRANSFORMERS
    skipped_calls = ("{layout} of the unperturbed call; the spatio-temporal and modality-isolation guidance calls "
                     "skipped")
    latent_grid = staticmethod(latent_grid)

    def __init__(self, pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None):
        if type(pipe).__name__ not in LTX2_PIPELINES:
            raise ValueError(f"i2am.trace: {type(pipe).__name__} runs an LTX-2 transformer, but only "
                             f"{list(LTX2_PIPELINES)} keep a reference image as latent frame 0, the keys of the "
                             f"traced self-attention; docs/pipeline_coverage.md lists what i2am.trace supports")
        self._unperturbed = True
        super().__init__(pipe, capture, num_steps=num_steps)

    def _find_layers(self, per_token: bool) -> list:
        return ltx2_layer_specs(self.pipe.transformer)

    def _watch_steps(self, hooks: Hooks) -> None:
        pass   # the recorded call is told by its arguments (module docstring)

    def _on_transformer_call(self, module, args, kwargs) -> None:
        self._unperturbed = unperturbed_call(kwargs)

    def _records_call(self) -> bool:
        if not self._unperturbed:
            self._skipped_uncond = True
        return self._unperturbed

    def _video_meta(self) -> dict:
        return {"temporal_ratio": int(self.pipe.vae_temporal_compression_ratio),
                "spatial_ratio": int(self.pipe.vae_spatial_compression_ratio)
                * int(self.pipe.transformer.config.patch_size),
                "first_latent_frame": GENERATED_FRAMES[0]}
