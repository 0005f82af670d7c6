"""The encoder and decoder passes of a diffusers ``UNet2DConditionModel``, split so that a family can feed extra
features between them (StableVITON's spatial encoder and warp blocks). ``decode(encode(...))`` equals the UNet's
own forward for the SD-1.x configuration (no class/added embeddings, no adapters)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import UNet2DConditionModel


def time_embedding(unet: UNet2DConditionModel, t, batch: int, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(t, device=unet.conv_in.weight.device).reshape(-1).expand(batch)
    return unet.time_embedding(unet.time_proj(t).to(dtype))


def encode(unet, sample: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None,
           added_after_conv_in: torch.Tensor | None = None, run_mid: bool = True):
    """conv_in (+ ``added_after_conv_in``) -> down blocks (-> mid block). Returns (h, skip features); the skips
    are the 12 LDM ``input_blocks`` outputs in order."""
    h = unet.conv_in(sample)
    if added_after_conv_in is not None:
        h = h + added_after_conv_in
    skips = (h,)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(h, temb=emb, encoder_hidden_states=context)
        else:
            h, res = block(h, temb=emb)
        skips += res
    if run_mid and unet.mid_block is not None:
        h = unet.mid_block(h, emb, encoder_hidden_states=context)
    return h, skips


def decode(unet, h: torch.Tensor, skips: tuple, emb: torch.Tensor, context: torch.Tensor,
           before_output_block: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Up blocks -> output conv. ``before_output_block(k, h)`` may change h before LDM output block k (0..11),
    i.e. before the k-th decoder resnet and its skip concatenation."""
    skips = list(skips)
    index = 0
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            if before_output_block is not None:
                h = before_output_block(index, h)
            h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
            if attentions is not None:
                h = attentions[j](h, encoder_hidden_states=context, return_dict=False)[0]
            index += 1
        if block.upsamplers is not None:
            size = skips[-1].shape[2:] if skips else None
            for upsampler in block.upsamplers:
                h = upsampler(h, size)
    if unet.conv_norm_out is not None:
        h = unet.conv_act(unet.conv_norm_out(h))
    return unet.conv_out(h)
