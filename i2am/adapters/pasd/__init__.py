"""PASD (Pixel-Aware Stable Diffusion) super-resolution: architecture, release loading and the i2am adapter.

Registered models: ``pasd`` (SD-1.5 size; ``checkpoint=`` a release folder and ``base_model=`` a local SD-1.5
folder load real weights) and ``pasd-tiny`` (CPU-sized, same layout: 12 PACA layers on 4 grid levels).
"""
from __future__ import annotations

from i2am.adapters._registry import register_model
from i2am.adapters.pasd.adapter import PASDAdapter
from i2am.adapters.pasd.controlnet import DegradationRemovalEmbedding, PixelAwareControlNetModel
from i2am.adapters.pasd.factory import build_pasd, pasd_from_release
from i2am.adapters.pasd.unet import PixelAwareUNet2DConditionModel

__all__ = [
    "DegradationRemovalEmbedding",
    "PASDAdapter",
    "PixelAwareControlNetModel",
    "PixelAwareUNet2DConditionModel",
    "build_pasd",
    "pasd_from_release",
]


@register_model("pasd")
def pasd(device="cpu", checkpoint=None, base_model=None, variant: str = "pasd", **overrides):
    if checkpoint is not None:
        if base_model is None:
            raise ValueError("pasd: checkpoint= needs base_model= (a local SD-1.5 folder with vae/, text_encoder/, "
                             "tokenizer/, scheduler/)")
        return pasd_from_release(checkpoint, base_model, device, **overrides)
    return build_pasd("full", device, variant, base_model, **overrides)


@register_model("pasd-tiny")
def pasd_tiny(device="cpu", **overrides):
    return build_pasd("tiny", device, **overrides)
