"""i2am.toy: every tiny pipeline builds on the CPU and runs a call with the inputs the module makes for it; the
prompt embeddings fit each pipeline's widths; seeds fix the weights; mistakes are refused naming the choices."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import i2am
from i2am import toy
from i2am.adapters.diffusers.video.ltx2_tiny import LTX2_TEXT_DIM

REFERENCE_FREE = {"StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusion3Pipeline"}
IMAGE_LISTS = {"Flux2Pipeline", "Flux2KleinPipeline", "QwenImageEditPlusPipeline"}
VIDEO = {*toy.VIDEO_PIPELINES, *toy.UNET_VIDEO_PIPELINES, "SkyReelsV2ImageToVideoPipeline",
         "HunyuanVideo15ImageToVideoPipeline", toy.LTX2_PIPELINE}
VIDEO_FRAMES = 5   # Wan-style VAEs take 4k + 1 frames
# calls without height / width: the video's size is the image's bucket at the transformer's target size (16 pixels)
SIZE_FROM_IMAGE = {"HunyuanVideo15ImageToVideoPipeline": (16, 16)}


def _inputs(name: str) -> dict:
    """The image arguments of one call at 64 x 64."""
    if name in REFERENCE_FREE:
        return {}
    if name == "PaintByExamplePipeline":
        return dict(example_image=toy.image(64, 64), image=toy.image(64, 64, seed=1), mask_image=toy.mask(64, 64))
    if name == "StableDiffusionInpaintPipeline":
        return dict(image=toy.image(64, 64), mask_image=toy.mask(64, 64))
    if name == "FluxKontextPipeline":
        return dict(image=toy.image(64, 64), max_area=64 * 64, _auto_resize=False)
    if name == "FluxKontextInpaintPipeline":
        return dict(image=toy.image(64, 64), mask_image=toy.mask(64, 64), image_reference=toy.image(64, 48, seed=1),
                    max_area=64 * 64, _auto_resize=False)
    if name == toy.LTX2_PIPELINE:   # image_crf=0: no H.264 re-compression of the image
        return dict(image=toy.image(64, 64), num_frames=VIDEO_FRAMES, image_crf=0)
    if name in VIDEO:
        return dict(image=toy.image(64, 64), num_frames=VIDEO_FRAMES)
    return dict(image=[toy.image(64, 64)] if name in IMAGE_LISTS else toy.image(64, 64))


@pytest.mark.parametrize("name", toy.PIPELINES)
def test_every_pipeline_runs_a_call_with_its_own_inputs(name):
    pipe = toy.pipeline(name)
    assert type(pipe).__name__ == name
    assert all(p.device.type == "cpu" for c in pipe.components.values() if isinstance(c, torch.nn.Module)
               for p in c.parameters())
    context = toy.qwen_reference_area() if name.startswith("QwenImageEdit") else nullcontext()
    with context:
        size = {} if name in SIZE_FROM_IMAGE else dict(height=64, width=64)
        result = pipe(**toy.prompt(pipe), **_inputs(name), **size, num_inference_steps=2, output_type="np")
    out = result.frames if name in VIDEO else result.images
    shape = ((1, VIDEO_FRAMES) if name in VIDEO else (1,)) + SIZE_FROM_IMAGE.get(name, (64, 64)) + (3,)
    assert out.shape == shape and np.isfinite(out).all()


@pytest.mark.parametrize("ip_adapter,tokens", [(True, 4), ("plus", 16)])
def test_ip_adapters_take_a_pil_image(ip_adapter, tokens):
    pipe = toy.pipeline("StableDiffusionPipeline", ip_adapter=ip_adapter)
    with i2am.trace(pipe) as tr:
        pipe(**toy.prompt(pipe), ip_adapter_image=toy.image(50, 70), height=64, width=64, num_inference_steps=1)
    assert tr.maps.relations == ["text", "image:ip_adapter"]
    assert {tuple(m["ref_grid"]) for m in tr.maps.relation("image:ip_adapter").meta["layers"]} == {(1, tokens)}


def test_prompt_gives_the_keyword_arguments_each_pipeline_takes():
    def keys(name, **kwargs):
        return sorted(toy.prompt(toy.pipeline(name), **kwargs))

    assert keys("StableDiffusionPipeline") == ["negative_prompt_embeds", "prompt_embeds"]
    assert keys("StableDiffusionPipeline", negative=False) == ["prompt_embeds"]
    assert keys("StableDiffusionXLPipeline") == ["negative_pooled_prompt_embeds", "negative_prompt_embeds",
                                                 "pooled_prompt_embeds", "prompt_embeds"]
    assert keys("FluxKontextPipeline") == ["pooled_prompt_embeds", "prompt_embeds"]   # negative: true CFG
    assert keys("Flux2KleinPipeline") == ["negative_prompt_embeds", "prompt_embeds"]   # guides by default
    assert keys("QwenImageEditPipeline", negative=True) == ["negative_prompt_embeds", "negative_prompt_embeds_mask",
                                                            "prompt_embeds", "prompt_embeds_mask"]
    assert keys("PaintByExamplePipeline") == []
    wan = toy.prompt(toy.pipeline("WanImageToVideoPipeline"), tokens=5)       # guides by default; 512 text tokens
    assert sorted(wan) == ["negative_prompt_embeds", "prompt_embeds"] and wan["prompt_embeds"].shape[1] == 512
    hunyuan = toy.prompt(toy.pipeline("HunyuanVideo15ImageToVideoPipeline"), batch=2)   # guides by default
    assert sorted(hunyuan) == sorted(f"{prefix}prompt_embeds{part}" for prefix in ("", "negative_")
                                     for part in ("", "_mask", "_2", "_mask_2"))
    assert hunyuan["prompt_embeds_mask"].sum(1).tolist() == [6, 5]      # the last 1 + b % 2 text tokens padding
    assert hunyuan["prompt_embeds_mask_2"].sum(1).tolist() == [2, 3]    # the last 4 - b % 3 glyph tokens padding
    ltx2 = toy.pipeline(toy.LTX2_PIPELINE)   # guides by default; the connectors read 3 x 32 channels and a mask
    assert keys(toy.LTX2_PIPELINE) == ["negative_prompt_attention_mask", "negative_prompt_embeds",
                                       "prompt_attention_mask", "prompt_embeds"]
    assert toy.prompt(ltx2)["prompt_embeds"].shape[-1] == LTX2_TEXT_DIM
    kontext = toy.pipeline("FluxKontextPipeline")
    text = toy.prompt(kontext, batch=2, tokens=5)
    assert text["prompt_embeds"].shape == (2, 5, kontext.transformer.config.joint_attention_dim)
    def embeds(seed):
        return toy.prompt(kontext, seed=seed)["prompt_embeds"]

    assert torch.equal(embeds(3), embeds(3)) and not torch.equal(embeds(3), embeds(4))


def test_the_seed_fixes_the_weights():
    def weights(seed):
        return next(toy.pipeline("FluxKontextPipeline", seed=seed).transformer.parameters())

    assert torch.equal(weights(0), weights(0))
    assert not torch.equal(weights(0), weights(1))


def test_mistakes_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="no tiny build; choose from .*FluxKontextPipeline"):
        toy.pipeline("FluxPipeline")
    with pytest.raises(ValueError, match="ip_adapter='big'.*choose False, True, 'plain' or 'plus'"):
        toy.pipeline("StableDiffusionPipeline", ip_adapter="big")
    with pytest.raises(ValueError, match="IP-Adapters are built for"):
        toy.pipeline("FluxKontextPipeline", ip_adapter=True)


def test_images_masks_and_the_qwen_reference_area():
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

    assert toy.image(30, 40).size == (40, 30) and toy.image(30, 40).mode == "RGB"
    mask = np.asarray(toy.mask(8, 8))
    assert mask.sum() == 16 * 255 and mask[2:6, 2:6].min() == 255
    original = module.calculate_dimensions
    with pytest.raises(RuntimeError), toy.qwen_reference_area(32 * 32):
        assert module.calculate_dimensions(1024 * 1024, 1.0)[:2] == (32, 32)
        raise RuntimeError
    assert module.calculate_dimensions is original


def test_toy_is_an_attribute_of_the_package():
    assert i2am.toy is toy
