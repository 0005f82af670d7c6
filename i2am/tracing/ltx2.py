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
from i2am.engine.capture import BACKENDS
from i2am.engine.hooks import Hooks
from i2am.engine.layers import LayerSpec
from i2am.tracing.video import VideoPipelineTrace

LTX2_TRANSFORMERS = ("LTX2VideoTransformer3DModel",)
# the LTX-2 pipelines whose latent frame 0 is the reference image, written in before the first step
LTX2_PIPELINES = ("LTX2ImageToVideoPipeline",)
REFERENCE_FRAMES, GENERATED_FRAMES = (0, 1), (1, None)   # latent frame 0: the reference; 1..F-1: generated


def ltx2_layer_specs(transformer) -> list[LayerSpec]:
    """Per block, the video self-attention from the generated frames to the reference frame
    (``image:reference/transformer_blocks.<i>.attn1``), then the generated frames' cross-attention to the prompt
    tokens (``text/transformer_blocks.<i>.attn2``, G2R over the tokens as one row)."""
    specs = []
    for index, block in enumerate(transformer.transformer_blocks):
        for name in ("attn1", "attn2"):
            path = f"transformer_blocks.{index}.{name}"
            kind = type(getattr(block, name).processor).__name__
            if BACKENDS.get(kind) != "dispatch":
                raise ValueError(f"i2am.trace: transformer.{path} runs processor {kind}, whose q and k (after the "
                                 f"rotary embedding) i2am cannot see; supported: LTX2AudioVideoAttnProcessor, "
                                 f"LTX2PerturbedAttnProcessor (diffusers' own, attn.set_processor(...))")
        common = dict(group="transformer", qk_at_backend=True, query_frames=GENERATED_FRAMES)
        specs.append(LayerSpec(name=f"image:reference/transformer_blocks.{index}.attn1", module=block.attn1,
                               ref_grid="frame", key_frames=REFERENCE_FRAMES, relation="image:reference", **common))
        specs.append(LayerSpec(name=f"text/transformer_blocks.{index}.attn2", module=block.attn2, ref_grid="row",
                               relation="text", **common))
    return specs


def latent_grid(args, kwargs) -> tuple[int, int, int]:
    """The latent grid (frames, h, w) the call's video tokens are packed from, from its arguments."""
    sizes = [kwargs.get(name) for name in ("num_frames", "height", "width")]
    if None in sizes:
        raise RuntimeError("i2am.trace: the LTX-2 transformer was called without num_frames, height and width; the "
                           "video maps need the latent grid its tokens are packed from")
    return tuple(sizes)


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
        self._unperturbed = not kwargs.get("spatio_temporal_guidance_blocks") and not kwargs.get("isolate_modalities")

    def _records_call(self) -> bool:
        if not self._unperturbed:
            self._skipped_uncond = True
        return self._unperturbed

    def _video_meta(self) -> dict:
        return {"temporal_ratio": int(self.pipe.vae_temporal_compression_ratio),
                "spatial_ratio": int(self.pipe.vae_spatial_compression_ratio)
                * int(self.pipe.transformer.config.patch_size),
                "first_latent_frame": GENERATED_FRAMES[0]}
