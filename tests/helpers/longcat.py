"""A tiny ``LongCatImageEditPipeline`` for the i2am.trace tests: the adapters' build (``dit/tiny.py``: a stand-in for
its Qwen2-VL processor, whose image processor its constructor keeps), its ``encode_prompt`` given the embeddings as
the adapter gives them (``encode_embeddings``: diffusers 0.42's takes ``len(prompt)`` before it looks at
``prompt_embeds``)."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from i2am.adapters.diffusers.dit.longcat_image_edit import encode_embeddings
from i2am.adapters.diffusers.dit.tiny import build_transformer_pipeline


def tiny_longcat_edit(seed: int = 0):
    """1 double- and 1 single-stream block of 2 heads of 16 channels over a 32-wide text stream; a 4-level VAE
    (factor 8) with the 16 latent channels the pipeline hard-codes."""
    pipe = build_transformer_pipeline("LongCatImageEditPipeline", "tiny", seed=seed)
    pipe.encode_prompt = encode_embeddings(pipe.encode_prompt)
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
