"""Conversion rules for the custom model's Lightning checkpoint (``qkrwnstj306/viton-step-1`` ``v2/``).

That code re-implements SD-1.5 in the "pytorch-stable-diffusion" naming (``unet.encoders.1.1.attention_2.q_proj``),
saves the VAE as ``nn.Sequential`` indices (``encoder.13.attention.in_proj``), DINOv2 in torch.hub naming
(``blocks.0.attn.qkv``) and its projector as ``mlp.proj.{0,1,2}``. Each of those names is first mapped to the LDM
name (hand-written: diffusers has no converter for this layout), then to diffusers through the LDM maps derived
from diffusers' own converters (``convert.ldm_unet_key_map`` / ``ldm_vae_key_map``).
"""
from __future__ import annotations

import re

from i2am.adapters._convert import Rule, ldm_unet_key_map, ldm_vae_key_map

# ---- UNet: pytorch-stable-diffusion names -> LDM ``UNetModel`` names ---------------------------------------------
RESBLOCK_PARTS = {"groupnorm_feature": "in_layers.0", "conv_feature": "in_layers.2", "linear_time": "emb_layers.1",
                  "groupnorm_merged": "out_layers.0", "conv_merged": "out_layers.3",
                  "residual_layer": "skip_connection"}
ATTENTION_PARTS = {"groupnorm": "norm", "conv_input": "proj_in", "conv_output": "proj_out",
                   "layernorm_1": "transformer_blocks.0.norm1", "layernorm_2": "transformer_blocks.0.norm2",
                   "layernorm_3": "transformer_blocks.0.norm3",
                   "attention_1.out_proj": "transformer_blocks.0.attn1.to_out.0",
                   "attention_2.q_proj": "transformer_blocks.0.attn2.to_q",
                   "attention_2.k_proj": "transformer_blocks.0.attn2.to_k",
                   "attention_2.v_proj": "transformer_blocks.0.attn2.to_v",
                   "attention_2.out_proj": "transformer_blocks.0.attn2.to_out.0",
                   "linear_geglu_1": "transformer_blocks.0.ff.net.0.proj",
                   "linear_geglu_2": "transformer_blocks.0.ff.net.2"}
FUSED_QKV = ("transformer_blocks.0.attn1.to_q", "transformer_blocks.0.attn1.to_k", "transformer_blocks.0.attn1.to_v")
UNET_TOP = {"diffusion.time_embedding.linear_1": "time_embed.0", "diffusion.time_embedding.linear_2": "time_embed.2",
            "diffusion.final.groupnorm": "out.0", "diffusion.final.conv": "out.2"}
STAGES = {"encoders": "input_blocks", "decoders": "output_blocks"}


def unet_source_names() -> dict[str, tuple[str, ...]]:
    """LDM UNet key -> custom key(s) (the fused self-attention in_proj feeds three LDM keys)."""
    out: dict[str, list[str]] = {}
    for ldm in ldm_unet_key_map():
        out.setdefault(_custom_unet_name(ldm), []).append(ldm)
    return {src: tuple(ldms) for src, ldms in out.items()}


def _custom_unet_name(ldm: str) -> str:
    stem, param = ldm.rsplit(".", 1)
    for custom, name in UNET_TOP.items():
        if stem == name:
            return f"{custom}.{param}"
    match = re.match(r"(input_blocks|output_blocks|middle_block)\.(?:(\d+)\.)?(\d+)(?:\.(.*))?$", stem)
    stage, block, layer, part = match.groups()
    where = f"diffusion.unet.bottleneck.{layer}" if stage == "middle_block" else \
        f"diffusion.unet.{'encoders' if stage == 'input_blocks' else 'decoders'}.{block}.{layer}"
    if part is None or part == "op":                       # first conv, downsample conv
        return f"{where}.{param}"
    if part in FUSED_QKV:
        return f"{where}.attention_1.in_proj.{param}"
    for table in (RESBLOCK_PARTS, ATTENTION_PARTS):
        for custom, name in table.items():
            if part == name:
                return f"{where}.{custom}.{param}"
    if part == "conv":                                     # upsample conv
        return f"{where}.conv.{param}"
    raise KeyError(f"no custom-layout name for LDM UNet key {ldm!r}")


def unet_rules(model_prefix: str) -> list[Rule]:
    ldm_to_model = ldm_unet_key_map()
    return [Rule(src, tuple(model_prefix + ldm_to_model[name] for name in ldms))
            for src, ldms in unet_source_names().items()]


# ---- VAE: nn.Sequential indices -> LDM names -------------------------------------------------------------------
VAE_ENCODER = {0: "encoder.conv_in", 1: "encoder.down.0.block.0", 2: "encoder.down.0.block.1",
               3: "encoder.down.0.downsample.conv", 4: "encoder.down.1.block.0", 5: "encoder.down.1.block.1",
               6: "encoder.down.1.downsample.conv", 7: "encoder.down.2.block.0", 8: "encoder.down.2.block.1",
               9: "encoder.down.2.downsample.conv", 10: "encoder.down.3.block.0", 11: "encoder.down.3.block.1",
               12: "encoder.mid.block_1", 13: "encoder.mid.attn_1", 14: "encoder.mid.block_2", 15: "encoder.norm_out",
               17: "encoder.conv_out", 18: "quant_conv"}
VAE_DECODER = {0: "post_quant_conv", 1: "decoder.conv_in", 2: "decoder.mid.block_1", 3: "decoder.mid.attn_1",
               4: "decoder.mid.block_2", 5: "decoder.up.3.block.0", 6: "decoder.up.3.block.1",
               7: "decoder.up.3.block.2", 9: "decoder.up.3.upsample.conv", 10: "decoder.up.2.block.0",
               11: "decoder.up.2.block.1", 12: "decoder.up.2.block.2", 14: "decoder.up.2.upsample.conv",
               15: "decoder.up.1.block.0", 16: "decoder.up.1.block.1", 17: "decoder.up.1.block.2",
               19: "decoder.up.1.upsample.conv", 20: "decoder.up.0.block.0", 21: "decoder.up.0.block.1",
               22: "decoder.up.0.block.2", 23: "decoder.norm_out", 25: "decoder.conv_out"}
VAE_PARTS = {"groupnorm_1": "norm1", "conv_1": "conv1", "groupnorm_2": "norm2", "conv_2": "conv2",
             "residual_layer": "nin_shortcut", "groupnorm": "norm", "attention.out_proj": "proj_out"}


def vae_rules(model_prefix: str) -> list[Rule]:
    ldm_to_model = ldm_vae_key_map()
    rules = []
    for stage, table in (("encoder", VAE_ENCODER), ("decoder", VAE_DECODER)):
        ldm_of = {v: k for k, v in table.items()}
        by_source: dict[str, list[str]] = {}
        for ldm in ldm_to_model:
            stem = next((s for s in ldm_of if ldm.startswith(s + ".")), None)
            if stem is None:
                continue
            part = ldm[len(stem) + 1:]
            custom_part = _vae_part(part)
            by_source.setdefault(f"{stage}.{ldm_of[stem]}.{custom_part}", []).append(ldm)
        rules += [Rule(src, tuple(model_prefix + ldm_to_model[name][0] for name in ldms))
                  for src, ldms in by_source.items()]
    return rules


def _vae_part(part: str) -> str:
    stem, param = part.rsplit(".", 1) if "." in part else ("", part)
    if stem in ("q", "k", "v"):
        return f"attention.in_proj.{param}"                  # fused, q/k/v order
    if stem == "":
        return param
    for custom, ldm in VAE_PARTS.items():
        if stem == ldm:
            return f"{custom}.{param}"
    raise KeyError(f"no custom-layout name for LDM VAE part {part!r}")


# ---- DINOv2: torch.hub names -> transformers Dinov2Model ---------------------------------------------------------
DINO_TOP = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
            "mask_token": "embeddings.mask_token",
            "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
            "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
            "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
DINO_BLOCK = {"norm1": ("norm1",), "attn.qkv": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
              "attn.proj": ("attention.o_proj",), "norm2": ("norm2",), "mlp.w12": ("mlp.gate_proj", "mlp.up_proj"),
              "mlp.w3": ("mlp.down_proj",)}


def dinov2_rules(source_prefix: str, model_prefix: str, num_layers: int) -> list[Rule]:
    rules = [Rule(source_prefix + hub, (model_prefix + hf,)) for hub, hf in DINO_TOP.items()]
    for i in range(num_layers):
        for hub, hf in DINO_BLOCK.items():
            rules += [Rule(f"{source_prefix}blocks.{i}.{hub}.{p}", tuple(f"{model_prefix}encoder.layer.{i}.{h}.{p}"
                                                                          for h in hf)) for p in ("weight", "bias")]
        rules += [Rule(f"{source_prefix}blocks.{i}.ls{k}.gamma",
                       (f"{model_prefix}encoder.layer.{i}.layer_scale{k}.lambda1",)) for k in (1, 2)]
    return rules


# ---- projector (MLPProjModel) -> TokenProjector -----------------------------------------------------------------
PROJECTOR_BLOCK = {"layernorm_1": ("norm1",), "attention_1.in_proj": ("attn1.to_q", "attn1.to_k", "attn1.to_v"),
                   "attention_1.out_proj": ("attn1.to_out.0",), "layernorm_2": ("norm3",),
                   "linear_geglu_1": ("ff.net.0.proj",), "linear_geglu_2": ("ff.net.2",)}


def projector_rules(model_prefix: str, num_blocks: int) -> list[Rule]:
    rules = []
    for p in ("weight", "bias"):
        rules += [Rule(f"mlp.proj.0.{p}", (f"{model_prefix}norm_in.{p}",)),
                  Rule(f"mlp.proj.2.{p}", (f"{model_prefix}proj_out.{p}",))]
    for i in range(num_blocks):
        for src, parts in PROJECTOR_BLOCK.items():
            params = ("weight",) if src == "attention_1.in_proj" else ("weight", "bias")
            rules += [Rule(f"mlp.proj.1.blocks.{i}.{src}.{p}",
                           tuple(f"{model_prefix}blocks.{i}.{x}.{p}" for x in parts)) for p in params]
    return rules
