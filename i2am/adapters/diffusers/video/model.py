"""The registered ``model=diffusers`` image-to-video models: ``diffusers-video-tiny`` (built from config, CPU,
seconds) and the pipelines of ``model=diffusers model.pipeline=<one of VIDEO_PIPELINES> model.path=<folder>``
(``video_pipeline``, which ``diffusers_pipeline`` hands them to).

    i2am attribute model=diffusers-video-tiny data=toy_vitonhd data.batch_size=1
    i2am attribute model=diffusers model.pipeline=WanImageToVideoPipeline model.path=/models/Wan2.1-I2V-14B-480P \\
        model.num_frames=33 model.image_size=[480,832] data.batch_size=1 trainer=gpu
"""
from __future__ import annotations

from pathlib import Path

import torch

from i2am.adapters._registry import TOY_IMAGE_SIZE, register_model
from i2am.adapters.diffusers.model_path import resolve_model_path
from i2am.adapters.diffusers.video.hunyuan_video15 import HunyuanVideo15Adapter
from i2am.adapters.diffusers.video.i2vgen_xl import I2VGenXLAdapter
from i2am.adapters.diffusers.video.ltx2 import LTX2VideoAdapter
from i2am.adapters.diffusers.video.ltx2_tiny import build_ltx2_pipeline
from i2am.adapters.diffusers.video.svd import StableVideoDiffusionAdapter
from i2am.adapters.diffusers.video.tiny import build_hunyuan_video15, build_skyreels_v2_i2v, build_video_pipeline
from i2am.adapters.diffusers.video.unet_tiny import UNET_VIDEO_PIPELINES, build_unet_video_pipeline
from i2am.adapters.diffusers.video.wan import ADAPTERS as WAN_ADAPTERS

ADAPTERS = {**WAN_ADAPTERS, **{cls.pipeline_class: cls for cls in (LTX2VideoAdapter, HunyuanVideo15Adapter,
                                                                    I2VGenXLAdapter, StableVideoDiffusionAdapter)}}
VIDEO_PIPELINES = tuple(ADAPTERS)
TEXT_PARTS = ("tokenizer", "text_encoder")   # not loaded: no text encoder is run
EXTRA_TEXT_PARTS = {HunyuanVideo15Adapter.pipeline_class: ("tokenizer_2", "text_encoder_2")}   # byT5


def is_video_pipeline(name: str) -> bool:
    """Whether ``model.pipeline`` names an image-to-video pipeline that ``model=diffusers`` runs."""
    return str(name) in VIDEO_PIPELINES


def unsupported(pipeline: str) -> str:
    return (f"model.pipeline={pipeline}: the image-to-video pipelines of model=diffusers are {list(VIDEO_PIPELINES)}"
            f"; trace the others with i2am.trace (docs/video_maps.md)")


def load_video_pipeline(pipeline: str, path: str | Path):
    """``<pipeline>.from_pretrained`` of a local folder or a hub id's snapshot, without its tokenizer and text
    encoder."""
    import diffusers

    folder = resolve_model_path(path)
    return getattr(diffusers, pipeline).from_pretrained(str(folder), local_files_only=True,
                                                        **{name: None for name in TEXT_PARTS
                                                           + EXTRA_TEXT_PARTS.get(pipeline, ())})


def tiny_video_pipeline(pipeline: str, seed: int = 0):
    if pipeline == "SkyReelsV2ImageToVideoPipeline":
        return build_skyreels_v2_i2v(seed)
    if pipeline in UNET_VIDEO_PIPELINES:
        return build_unet_video_pipeline(pipeline, seed=seed)
    if pipeline == LTX2VideoAdapter.pipeline_class:
        return build_ltx2_pipeline(seed)
    if pipeline == HunyuanVideo15Adapter.pipeline_class:
        return build_hunyuan_video15(seed)
    return build_video_pipeline(pipeline, seed=seed)


def _no_image_options(ip_adapter: dict | None, prompt: str, **ignored) -> None:
    if ip_adapter and ip_adapter.get("path"):
        raise ValueError("model.ip_adapter is for UNet pipelines; an image-to-video pipeline takes the reference as "
                         "the first frame (model.ip_adapter.path=null)")
    if prompt:
        raise ValueError(f"model.prompt={prompt!r}: no text encoder is run for image-to-video pipelines; pass "
                         f"model.prompt_embeds=<safetensors file with prompt_embeds [1, T, D] (Wan: T = 512; + "
                         f"negative_prompt_embeds)>")


def video_adapter(pipe, size: str, device, guidance, image_size, num_frames, num_steps, relation, prompt_embeds):
    adapter = ADAPTERS[type(pipe).__name__](pipe, size, guidance=guidance, image_size=tuple(image_size),
                                            num_frames=num_frames, num_steps=num_steps, relation=relation,
                                            prompt_embeds=prompt_embeds)
    return adapter if torch.device(device).type == "meta" else adapter.to(device)


def video_pipeline(device="cpu", pipeline: str = "WanImageToVideoPipeline", path: str | None = None,
                   guidance: float | None = None, image_size=(480, 832), num_frames: int = 81, num_steps: int = 50,
                   relation: str | None = None, prompt_embeds: str | None = None, ip_adapter: dict | None = None,
                   prompt: str = ""):
    """A local diffusers folder of an image-to-video pipeline; the full-size architecture is not built without one
    (14 B parameters): ``path`` is required."""
    _no_image_options(ip_adapter, prompt)
    if pipeline not in ADAPTERS:
        raise ValueError(unsupported(pipeline))
    if path is None:
        raise ValueError(f"model.path: {pipeline} is loaded from a local diffusers folder (or a hub id); for a "
                         f"from-config pipeline use model=diffusers-video-tiny")
    return video_adapter(load_video_pipeline(pipeline, path), "full", device, guidance, image_size, num_frames,
                         num_steps, relation, prompt_embeds)


@register_model("diffusers-video-tiny")
def diffusers_video_tiny(device="cpu", pipeline: str = "WanImageToVideoPipeline", guidance: float | None = None,
                         image_size=TOY_IMAGE_SIZE, num_frames: int = 5, num_steps: int = 50,
                         relation: str | None = None, prompt_embeds: str | None = None, path: str | None = None,
                         ip_adapter: dict | None = None, prompt: str = "", seed: int = 0):
    """A tiny image-to-video pipeline built from config (random weights, CPU, seconds) for tests and the toy world;
    it is built on the CPU whatever ``device`` says (the startup checks' ``meta`` included: it costs seconds)."""
    _no_image_options(ip_adapter, prompt)
    if pipeline not in ADAPTERS:
        raise ValueError(unsupported(pipeline))
    if path is not None:
        raise ValueError("diffusers-video-tiny is built from config; use model=diffusers for a folder")
    device = "cpu" if torch.device(device).type == "meta" else device
    return video_adapter(tiny_video_pipeline(pipeline, seed), "tiny", device, guidance, image_size, num_frames,
                         num_steps, relation, prompt_embeds)
