"""The attributed layers of a Wan 2.1 video transformer (``WanTransformer3DModel`` and the transformers built on its
blocks: ChronoEdit's, SkyReels-V2's), read by both ``i2am.trace`` (``i2am.tracing.video``) and ``model=diffusers``
(``i2am.adapters.diffusers.video``), which may not import each other.

Wan's second attention of every block (``attn2``) attends to two conditionings with one query and two softmaxes: the
last ``WAN_TEXT_TOKENS`` context tokens are text (keys ``to_k`` then ``norm_k``), the tokens before them the reference
image's CLIP tokens (keys ``add_k_proj`` then ``norm_added_k``). Each is one relation: "text" and "image:reference".
"""
from __future__ import annotations

from i2am.engine.layers import LayerSpec

# SkyReels-V2's image-to-video transformer is Wan 2.1's: the same blocks, attention and CFG calls
VIDEO_TRANSFORMERS = ("WanTransformer3DModel", "ChronoEditTransformer3DModel", "SkyReelsV2Transformer3DModel")
# compute q, k through the layer's own modules (so hooks see them)
WAN_PROCESSORS = ("WanAttnProcessor", "SkyReelsV2AttnProcessor")
WAN_TEXT_TOKENS = 512   # the text length Wan's attention processor hard-codes (image tokens are the ones before)


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
