"""What ``i2am.trace`` hooks in a diffusers pipeline: its denoisers, their key streams, and the CFG chunk layout.

A key stream is one (attention layer, key source) pair that attends to one conditioning, the pipeline's *relation*:
  "text" (or "image:example" for Paint-by-Example, whose cross-attention context is a CLIP image token)
      the cross-attention keys ``to_k`` of every ``attn2`` in the UNet (and ControlNet, as group "controlnet");
  "image:ip_adapter" (".1", ".2", ... for further adapters)
      the IP-Adapter image tokens' keys ``to_k_ip[i]`` of ``IPAdapterAttnProcessor(2_0)``; their own softmax;
  "image:reference"
      the reference tokens concatenated after the own tokens in the keys of a self-attention whose processor
      declares ``reference_keys = True`` (``i2am.adapters.diffusers.reference_attention``); G2R normalises over those
      tokens. In I2VGen-XL: the tokens of its reference's VAE latent in the cross-attention context (``CONTEXT_PARTS``).
  "image:clip"
      the reference's CLIP image embedding as the cross-attention context (Stable Video Diffusion: one token, so G2R is
      identically 1; I2VGen-XL: its last ``in_channels`` context tokens).
Image-to-video UNets fold the frames into the batch (``FRAME_AXIS``): a layer's rows are (chunk, sample, frame), and its
temporal transformer blocks, whose queries are one position's frames rather than a grid, are not captured.
Every attention layer of a denoiser must run a processor whose key path is known; any other processor raises
(naming the module and the processor class) instead of giving silently empty maps.
"""
from __future__ import annotations

from diffusers.models.attention_processor import Attention
from torch import nn

from i2am.engine.cfg_rows import CONDITIONAL_CHUNK
from i2am.engine.layers import LayerSpec

# Processors that compute keys with ``attn.to_k`` on the layer's own context, so a hook on to_k sees them.
PLAIN_PROCESSORS = frozenset({"AttnProcessor", "AttnProcessor2_0", "XFormersAttnProcessor", "SlicedAttnProcessor"})
# Processors adding IP-Adapter image tokens through ``processor.to_k_ip[i]`` (separate softmax per adapter).
IP_ADAPTER_PROCESSORS = frozenset({"IPAdapterAttnProcessor", "IPAdapterAttnProcessor2_0",
                                   "IPAdapterXFormersAttnProcessor"})
# The chunk counts a pipeline's denoiser calls stack (batch / latent batch), each with its conditional chunk
# (``cfg_rows.CONDITIONAL_CHUNK``): diffusers stacks [negative, positive] for CFG; InstructPix2Pix 3 chunks.
DEFAULT_CHUNKS = {c: CONDITIONAL_CHUNK[c] for c in (1, 2)}
PIPELINE_CHUNKS = {"StableDiffusionInstructPix2PixPipeline": {c: CONDITIONAL_CHUNK[c] for c in (1, 3)},
                   "StableDiffusionXLInstructPix2PixPipeline": {c: CONDITIONAL_CHUNK[c] for c in (1, 3)}}
# The relation of the cross-attention context, when it is not text.
CONTEXT_RELATION = {"PaintByExamplePipeline": "image:example", "StableVideoDiffusionPipeline": "image:clip"}
# Image-to-video UNets that fold the frames into the batch: the axis of ``prepare_latents``' output holding the frames.
FRAME_AXIS = {"StableVideoDiffusionPipeline": 1, "I2VGenXLPipeline": 2}
# Attention blocks across frames (queries: the frames at one position), left out of the capture.
TEMPORAL_BLOCKS = (".temporal_transformer_blocks.", ".temp_attentions.")
# Pipelines whose denoiser is not a UNet with diffusers ``Attention`` layers.
BLOCK_PREFIXES = ("down_blocks", "mid_block", "up_blocks")


def conditional_chunks(pipeline_class: str) -> dict[int, int]:
    return PIPELINE_CHUNKS.get(pipeline_class, DEFAULT_CHUNKS)


def context_relation(pipeline_class: str) -> str:
    return CONTEXT_RELATION.get(pipeline_class, "text")


def frame_axis(pipeline_class: str) -> int | None:
    """The frame axis of the pipeline's latents when its UNet folds the frames into the batch, else None."""
    return FRAME_AXIS.get(pipeline_class)


def context_parts(pipe) -> list[tuple[str, tuple[int, int | None], tuple[int, int] | str]]:
    """(relation, key token range, reference grid) of each conditioning inside one cross-attention context.

    I2VGen-XL's context is [prompt tokens, its reference's VAE latent embedded to a fixed grid, the reference's CLIP
    embedding as ``in_channels`` tokens]; ranges count from the end, since the prompt's length varies."""
    if type(pipe).__name__ != "I2VGenXLPipeline":
        return [(context_relation(type(pipe).__name__), None, "row")]
    unet = pipe.unet
    pool = next(m for m in unet.image_latents_context_embedding if isinstance(m, nn.AdaptiveAvgPool2d))
    side = -(-pool.output_size[0] // 4)   # two stride-2 convolutions after the pooling
    clip, grid = unet.config.in_channels, side * side
    return [("text", (0, -(grid + clip)), "row"), ("image:reference", (-(grid + clip), -clip), (side, side)),
            ("image:clip", (-clip, None), "row")]


def denoisers(pipe) -> list[tuple[str, nn.Module]]:
    """(group, module) of the pipeline's denoisers, the one called first in a step first (ControlNet, then UNet)."""
    unet = getattr(pipe, "unet", None)
    if not isinstance(unet, nn.Module):
        parts = [k for k, v in getattr(pipe, "components", {}).items() if isinstance(v, nn.Module)]
        raise ValueError(f"i2am.trace: {type(pipe).__name__} has no UNet denoiser (components: {parts}); "
                         f"supported pipelines are listed in docs/pipelines.md")
    out = []
    controlnet = getattr(pipe, "controlnet", None)
    if controlnet is not None:
        nets = getattr(controlnet, "nets", None)   # MultiControlNetModel
        if nets is not None:
            out += [(f"controlnet.{i}", net) for i, net in enumerate(nets)]
        else:
            out.append(("controlnet", controlnet))
    out.append(("unet", unet))
    return out


def _forward_rank(name: str) -> int:
    """diffusers registers a UNet's up blocks before its mid block; the forward order is down, mid, up."""
    return 0 if name.startswith("down_blocks") else 1 if name.startswith("mid_block") else 2


def _attention_modules(module: nn.Module) -> list[tuple[str, Attention]]:
    found = [(n, m) for n, m in module.named_modules() if isinstance(m, Attention) and n.startswith(BLOCK_PREFIXES)
             and not any(part in n for part in TEMPORAL_BLOCKS)]
    return sorted(found, key=lambda item: _forward_rank(item[0]))


def _ip_tokens(processor, index: int) -> int:
    tokens = processor.num_tokens
    return int(tokens[index] if isinstance(tokens, (list, tuple)) else tokens)


def layer_specs(pipe, per_token: bool = False) -> list[LayerSpec]:
    """Every key stream of the pipeline's denoisers as LayerSpecs named ``<relation>/<group path>``.

    per_token: also one single-token stream per IP-Adapter image token, relation "image:ip_adapter[t]" (R2G of
    that token alone)."""
    parts = context_parts(pipe)
    specs = []
    for group, net in denoisers(pipe):
        path_prefix = "" if group == "unet" else f"{group}."
        for name, attn in _attention_modules(net):
            path = path_prefix + name
            mid = name.startswith("mid_block")
            processor = attn.processor
            kind = type(processor).__name__
            if getattr(processor, "reference_keys", False):
                specs.append(LayerSpec(name=f"image:reference/{path}", module=attn, ref_grid="query", group=group,
                                       mid=mid, key_tokens="after_query", relation="image:reference"))
                continue
            if kind not in PLAIN_PROCESSORS | IP_ADAPTER_PROCESSORS:
                raise ValueError(f"i2am.trace: {type(pipe).__name__}.{group}.{name} runs processor {kind}, whose "
                                 f"keys i2am cannot see; supported processors: "
                                 f"{sorted(PLAIN_PROCESSORS | IP_ADAPTER_PROCESSORS)} and reference attention "
                                 f"(i2am.adapters.diffusers.reference_attention)")
            if not attn.is_cross_attention:
                continue
            for relation, tokens, grid in parts:
                specs.append(LayerSpec(name=f"{relation}/{path}", module=attn, ref_grid=grid, group=group, mid=mid,
                                       key_tokens=tokens, relation=relation))
            if kind in IP_ADAPTER_PROCESSORS:
                for i, to_k_ip in enumerate(processor.to_k_ip):
                    relation = "image:ip_adapter" + (f".{i}" if i else "")
                    specs.append(LayerSpec(name=f"{relation}/{path}", module=attn, ref_grid="row", group=group,
                                           mid=mid, key_module=to_k_ip, relation=relation))
                    for t in range(_ip_tokens(processor, i) if per_token else 0):
                        specs.append(LayerSpec(name=f"{relation}[{t}]/{path}", module=attn, group=group, mid=mid,
                                               key_module=to_k_ip, key_tokens=(t, t + 1), relation=f"{relation}[{t}]"))
    if not specs:
        raise ValueError(f"i2am.trace: {type(pipe).__name__} has no attention layer attending to a conditioning")
    return specs
