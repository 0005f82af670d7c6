"""Tiny diffusers pipelines with random weights, built from config on the CPU in seconds (nothing is downloaded), and
the inputs they take: to try ``i2am.trace`` and the docs' examples without real weights.

    pipe = i2am.toy.pipeline("StableDiffusionPipeline", ip_adapter=True)
    pipe(**i2am.toy.prompt(pipe), ip_adapter_image=i2am.toy.image(64, 64), height=64, width=64)

The pipelines have no tokenizer: the prompt is given as embeddings (``prompt``). Their maps show what the machinery
computes, not what a trained model attends to.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

from i2am.adapters.diffusers.dit.tiny import PIPELINES as TRANSFORMER_PIPELINES
from i2am.adapters.diffusers.dit.tiny import build_transformer_pipeline
from i2am.adapters.diffusers.kinds import KINDS
from i2am.adapters.diffusers.tiny import build_pipeline
from i2am.adapters.diffusers.video.ltx2_tiny import LTX2_PIPELINE, build_ltx2_pipeline
from i2am.adapters.diffusers.video.tiny import (
    HUNYUAN_GLYPH_DIM,
    HUNYUAN_TEXT_DIM,
    HUNYUAN_VIDEO15,
    WAN_TEXT_TOKENS,
    build_hunyuan_video15,
    build_skyreels_v2_i2v,
    build_video_pipeline,
)
from i2am.adapters.diffusers.video.tiny import PIPELINES as VIDEO_PIPELINES
from i2am.adapters.diffusers.video.unet_tiny import UNET_VIDEO_PIPELINES, build_unet_video_pipeline

UNET_PIPELINES = tuple(KINDS)
# FLUX.2 [klein]: the tiny FLUX.2 without guidance embedding; SkyReels-V2 I2V: the tiny Wan 2.1 I2V's components
DERIVED_PIPELINES = ("Flux2KleinPipeline", "SkyReelsV2ImageToVideoPipeline")
PIPELINES = (UNET_PIPELINES + TRANSFORMER_PIPELINES + DERIVED_PIPELINES + VIDEO_PIPELINES + (HUNYUAN_VIDEO15,)
             + UNET_VIDEO_PIPELINES + (LTX2_PIPELINE,))
# CFG in their default call
GUIDED_TRANSFORMER_PIPELINES = ("StableDiffusion3Pipeline", "Flux2KleinPipeline", HUNYUAN_VIDEO15)
# Wan 2.1 transformers: guided by default, 512 text tokens
WAN_STYLE_PIPELINES = (*VIDEO_PIPELINES, "SkyReelsV2ImageToVideoPipeline")
PROMPT_FREE = ("PaintByExamplePipeline", "StableVideoDiffusionPipeline")
IP_ADAPTERS = {False: None, None: None, True: "plain", "plain": "plain", "plus": "plus"}
TEXT_TOKENS = 7
GLYPH_TOKENS = 6   # HunyuanVideo-1.5's byT5 glyph tokens


def pipeline(name: str = "StableDiffusionPipeline", ip_adapter: bool | str = False, seed: int = 0):
    """A tiny ``diffusers.<name>`` with random weights on the CPU, progress bar off.

    Args:
        name: a UNet pipeline (``UNET_PIPELINES``: SD, img2img, inpainting, SDXL, ControlNet, InstructPix2Pix,
            Paint-by-Example) or a diffusion-transformer one (``TRANSFORMER_PIPELINES``: FLUX.1 Kontext, FLUX.2,
            Qwen-Image-Edit, SD3; and ``Flux2KleinPipeline``), an image-to-video one (``VIDEO_PIPELINES``: Wan 2.1
            image-to-video; and ``SkyReelsV2ImageToVideoPipeline``, its transformer; their call takes ``image``,
            ``height``, ``width``, ``num_frames``), ``HunyuanVideo15ImageToVideoPipeline`` (its call takes ``image``
            and ``num_frames``; the size follows the image), an image-to-video UNet one
            (``UNET_VIDEO_PIPELINES``: Stable Video Diffusion, I2VGen-XL; any image size) or
            ``LTX2ImageToVideoPipeline`` (LTX-2 with its audio stream; its call takes ``image``, ``height``,
            ``width``, ``num_frames``, and ``image_crf=0`` skips the H.264 re-compression of the image).
        ip_adapter: UNet pipelines other than Paint-by-Example: ``True`` / ``"plain"`` (4 image tokens) or
            ``"plus"`` (16 tokens, the Plus resampler); the pipeline then takes ``ip_adapter_image=<PIL image>``.
        seed: the weights' seed.
    """
    if name not in PIPELINES:
        raise ValueError(f"i2am.toy.pipeline({name!r}): no tiny build; choose from {list(PIPELINES)}")
    if ip_adapter not in IP_ADAPTERS:
        raise ValueError(f"i2am.toy.pipeline(ip_adapter={ip_adapter!r}): choose False, True, 'plain' or 'plus'")
    if IP_ADAPTERS[ip_adapter] and name not in UNET_PIPELINES[1:]:
        raise ValueError(f"i2am.toy.pipeline({name!r}, ip_adapter=...): IP-Adapters are built for "
                         f"{list(UNET_PIPELINES[1:])}")
    if name in UNET_PIPELINES:
        pipe = build_pipeline(name, "tiny", ip_adapter=IP_ADAPTERS[ip_adapter], seed=seed)
        if pipe.image_encoder is not None:   # PIL images in: resized to the tiny image encoder's input size
            pipe.register_modules(feature_extractor=_clip_processor(pipe.image_encoder.config.image_size))
    elif name == "Flux2KleinPipeline":
        pipe = _flux2_klein(seed)
    elif name == "SkyReelsV2ImageToVideoPipeline":
        pipe = build_skyreels_v2_i2v(seed)
    elif name in VIDEO_PIPELINES:
        pipe = build_video_pipeline(name, seed=seed)
    elif name == HUNYUAN_VIDEO15:
        pipe = build_hunyuan_video15(seed=seed)
    elif name == LTX2_PIPELINE:
        pipe = build_ltx2_pipeline(seed=seed)
    elif name in UNET_VIDEO_PIPELINES:
        pipe = build_unet_video_pipeline(name, seed=seed)
    else:
        pipe = build_transformer_pipeline(name, "tiny", seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _clip_processor(size: int):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _flux2_klein(seed: int):
    from diffusers import Flux2KleinPipeline, Flux2Transformer2DModel

    flux2 = build_transformer_pipeline("Flux2Pipeline", "tiny", seed=seed)
    torch.manual_seed(seed)
    transformer = Flux2Transformer2DModel.from_config({**flux2.transformer.config, "guidance_embeds": False})
    return Flux2KleinPipeline(scheduler=flux2.scheduler, vae=flux2.vae, text_encoder=None, tokenizer=None,
                              transformer=transformer.eval())


def prompt(pipe, batch: int = 1, seed: int = 0, negative: bool | None = None, tokens: int = TEXT_TOKENS) -> dict:
    """Random prompt embeddings of the widths ``pipe`` reads, as the keyword arguments of its call (the tiny
    pipelines have no tokenizer): ``prompt_embeds`` and, where the pipeline takes them, the pooled embeddings
    (SDXL, FLUX.1, SD3) and the mask (Qwen-Image-Edit, LTX-2). ``negative=True`` adds the ``negative_*`` ones: the
    unconditional chunk of CFG; for FLUX.1 Kontext, FLUX.2 [klein] and Qwen-Image-Edit they turn on true CFG.
    ``None``: only where the pipeline's default call needs them (UNet pipelines, SD3, FLUX.2 [klein], Wan
    image-to-video, SkyReels-V2 and LTX-2, which guide by default).
    Paint-by-Example and Stable Video Diffusion take no prompt: ``{}``; Wan image-to-video and SkyReels-V2 read 512
    text tokens whatever ``tokens`` says. HunyuanVideo-1.5: ``tokens`` text and ``GLYPH_TOKENS`` byT5 glyph
    embeddings with their masks, sample b's last 1 + b % 2 text and last 4 - b % 3 glyph tokens padding (each
    sample's context packs at its own positions)."""
    name = type(pipe).__name__
    if name in PROMPT_FREE:
        return {}
    if negative is None:
        negative = hasattr(pipe, "unet") or name in (*GUIDED_TRANSFORMER_PIPELINES, *WAN_STYLE_PIPELINES,
                                                      LTX2_PIPELINE)
    gen = torch.Generator().manual_seed(seed)
    if name == HUNYUAN_VIDEO15:
        return _hunyuan_video15_prompt(batch, gen, negative, tokens)
    if hasattr(pipe, "unet"):
        width = pipe.unet.config.cross_attention_dim
        pooled = pipe.text_encoder_2.config.projection_dim if name == "StableDiffusionXLPipeline" else None
    elif name in WAN_STYLE_PIPELINES:   # Wan's attention takes exactly its 512 text tokens (the rest are image tokens)
        width, pooled, tokens = pipe.transformer.config.text_dim, None, WAN_TEXT_TOKENS
    elif name == LTX2_PIPELINE:   # the text encoder's hidden states of several layers, stacked on the channels
        connectors = pipe.connectors.config
        width, pooled = connectors.caption_channels * connectors.text_proj_in_factor, None
    else:
        width = pipe.transformer.config.joint_attention_dim
        pooled = getattr(pipe.transformer.config, "pooled_projection_dim", None)
    kwargs = {}
    for prefix in ("", "negative_") if negative else ("",):
        kwargs[f"{prefix}prompt_embeds"] = torch.randn(batch, tokens, width, generator=gen)
        if pooled is not None:
            kwargs[f"{prefix}pooled_prompt_embeds"] = torch.randn(batch, pooled, generator=gen)
        if name.startswith("QwenImageEdit"):
            kwargs[f"{prefix}prompt_embeds_mask"] = torch.ones(batch, tokens, dtype=torch.long)
        if name == LTX2_PIPELINE:
            kwargs[f"{prefix}prompt_attention_mask"] = torch.ones(batch, tokens, dtype=torch.long)
    return kwargs


def _hunyuan_video15_prompt(batch: int, generator, negative: bool, tokens: int) -> dict:
    def valid_first(length: int, valid: list[int]) -> torch.Tensor:
        return torch.tensor([[1] * n + [0] * (length - n) for n in valid])

    text = valid_first(tokens, [max(tokens - 1 - b % 2, 1) for b in range(batch)])
    glyph = valid_first(GLYPH_TOKENS, [min(2 + b % 3, GLYPH_TOKENS) for b in range(batch)])
    kwargs = {}
    for prefix in ("", "negative_") if negative else ("",):
        kwargs[f"{prefix}prompt_embeds"] = torch.randn(batch, tokens, HUNYUAN_TEXT_DIM, generator=generator)
        kwargs[f"{prefix}prompt_embeds_mask"] = text
        kwargs[f"{prefix}prompt_embeds_2"] = torch.randn(batch, GLYPH_TOKENS, HUNYUAN_GLYPH_DIM, generator=generator)
        kwargs[f"{prefix}prompt_embeds_mask_2"] = glyph
    return kwargs


def image(height: int = 64, width: int = 64, seed: int = 0) -> Image.Image:
    """A random RGB image (noise: enough to drive a pipeline with random weights)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def mask(height: int = 64, width: int = 64) -> Image.Image:
    """An inpainting mask: white (repaint) over the centre half of each side, black elsewhere."""
    m = np.zeros((height, width), dtype=np.uint8)
    m[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 255
    return Image.fromarray(m)


@contextmanager
def qwen_reference_area(area: int = 64 * 64):
    """Qwen-Image-Edit (and Plus) resizes every reference to a 1024x1024 area (4096 tokens, minutes on a CPU); inside
    this context it resizes to ``area`` pixels instead, keeping the aspect ratio."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit, pipeline_qwenimage_edit_plus

    modules = (pipeline_qwenimage_edit, pipeline_qwenimage_edit_plus)
    originals = [module.calculate_dimensions for module in modules]
    for module, original in zip(modules, originals):
        module.calculate_dimensions = lambda _area, ratio, original=original: original(area, ratio)
    try:
        yield
    finally:
        for module, original in zip(modules, originals):
            module.calculate_dimensions = original
