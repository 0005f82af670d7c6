"""A tiny ``LongCatImageEditPipeline`` built from config, for the i2am.trace tests. Its constructor reads the image
processor of its Qwen2-VL text processor, and its call cannot run on prompt embeddings alone (diffusers 0.42's
``encode_prompt`` takes ``len(prompt)`` before it looks at ``prompt_embeds``); both serve only its text encoder,
which a tiny build has not: a stand-in processor, and ``encode_prompt`` given one empty prompt per embedding row."""
from __future__ import annotations

from contextlib import contextmanager

import torch


class NoTextProcessor:
    """Stands in for the Qwen2-VL processor: the constructor keeps its ``image_processor``, which only the text
    encoder's input would use."""

    image_processor = None


def tiny_longcat_edit(seed: int = 0):
    """1 double- and 1 single-stream block of 2 heads of 16 channels over a 32-wide text stream; a 4-level VAE
    (factor 8) with the 16 latent channels the pipeline hard-codes."""
    import diffusers

    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8,) * 4,
                                  down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4,
                                  shift_factor=0.0)
    transformer = diffusers.LongCatImageTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    pipe = diffusers.LongCatImageEditPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae.eval(),
                                              text_encoder=None, tokenizer=None, text_processor=NoTextProcessor(),
                                              transformer=transformer.eval())
    encode = pipe.encode_prompt

    def encode_embeddings(prompt=None, image=None, num_images_per_prompt=1, prompt_embeds=None):
        return encode(prompt=[""] * prompt_embeds.shape[0], image=image, num_images_per_prompt=num_images_per_prompt,
                      prompt_embeds=prompt_embeds)

    pipe.encode_prompt = encode_embeddings
    pipe.set_progress_bar_config(disable=True)
    return pipe


def longcat_prompt(tokens: int = 7, seed: int = 0) -> dict:
    """Random positive and negative prompt embeddings of the tiny transformer's 32-wide text stream."""
    gen = torch.Generator().manual_seed(seed)
    return {"prompt_embeds": torch.randn(1, tokens, 32, generator=gen),
            "negative_prompt_embeds": torch.randn(1, tokens, 32, generator=gen)}


@contextmanager
def longcat_area(area: int = 64 * 64):
    """LongCat-Image-Edit generates at, and resizes its reference to, a 1024x1024 area of the reference's aspect
    ratio; inside this context at ``area`` pixels instead."""
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit as module

    original = module.calculate_dimensions
    module.calculate_dimensions = lambda _area, ratio: original(area, ratio)
    try:
        yield
    finally:
        module.calculate_dimensions = original
