"""The attributed layers of LTX-2's video transformer (``LTX2VideoTransformer3DModel``), read by both ``i2am.trace``
(``i2am.tracing.ltx2``) and ``model=diffusers`` (``i2am.adapters.diffusers.video.ltx2``), which may not import each
other, and by the reference-frame knockout (``i2am.engine.frame_knockout``).

LTX-2 image-to-video keeps the reference's VAE latent as latent frame 0 of the video tokens (packed frame-major:
frame, then row, then column); the generated frames 1..F-1 read it through every block's video self-attention
(``attn1``): relation "image:reference". Their cross-attention to the prompt tokens (``attn2``) is "text".
"""
from __future__ import annotations

from i2am.engine.capture import BACKENDS
from i2am.engine.layers import LayerSpec

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
                raise ValueError(f"transformer.{path} runs processor {kind}, whose q and k (after the "
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
        raise RuntimeError("the LTX-2 transformer was called without num_frames, height and width; the "
                           "video maps need the latent grid its tokens are packed from")
    return tuple(sizes)


def unperturbed_call(kwargs) -> bool:
    """Whether a transformer call is the step's unperturbed one (CFG rows [negative, positive], or one chunk), not
    a spatio-temporal-guidance call (``spatio_temporal_guidance_blocks``) or a modality-isolation one
    (``isolate_modalities``): the one the maps record."""
    return not kwargs.get("spatio_temporal_guidance_blocks") and not kwargs.get("isolate_modalities")
