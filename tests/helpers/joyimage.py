"""A tiny ``JoyImageEditPipeline`` built from config, for the i2am.trace tests (no text encoder or Qwen3-VL
processor: the prompt goes in as embeddings with their masks, the negative one too, which its call otherwise encodes).
Its call resizes every image to a bucket of a 1024x1024 area (4096 tokens an image) and samples the reference's VAE
latent from the global random generator: ``joyimage_call`` keeps the size asked for and seeds that generator."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from i2am.adapters.diffusers.dit.tiny import build_transformer_pipeline


def tiny_joyimage_edit(seed: int = 0):
    """The adapters' build (``dit/tiny.py``): 2 double-stream blocks of 2 heads of 16 channels over a 32-wide text
    stream; a tiny Wan VAE (factor 8, 4 latent channels); 2x2 patches. Its bucket resize is turned off for good."""
    pipe = build_transformer_pipeline("JoyImageEditPipeline", "tiny", seed=seed)
    pipe.vae_image_processor.get_default_height_width = lambda image, height=None, width=None: (height, width)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def joyimage_prompt(tokens: int = 7, seed: int = 0) -> dict:
    """Random positive and negative prompt embeddings (32 wide) with all-ones masks."""
    gen = torch.Generator().manual_seed(seed)
    ones = torch.ones(1, tokens, dtype=torch.long)
    return {"prompt_embeds": torch.randn(1, tokens, 32, generator=gen), "prompt_embeds_mask": ones,
            "negative_prompt_embeds": torch.randn(1, tokens, 32, generator=gen), "negative_prompt_embeds_mask": ones}


@contextmanager
def seeded(seed: int = 0):
    """Inside: the global generator (from which the call samples its reference's VAE latent) is seeded."""
    torch.manual_seed(seed)
    yield
