"""Inputs and a naive float64 reference for Wan-2.1-style image-to-video transformers (Wan, SkyReels-V2) at the tiny
size of ``i2am.adapters.diffusers.video.tiny``: the q and k each attention call of the transformer attends with are
recorded at its ``dispatch_attention_fn``, and R2G over (frame, h, w) and G2R per generated frame are recomputed
from them."""
from __future__ import annotations

import torch

from i2am import toy
from i2am.adapters.diffusers.video.tiny import WAN_TEXT_DIM, WAN_TEXT_TOKENS

HEIGHT, WIDTH, FRAMES = 32, 48, 5          # latent grid (2 frames, 2 x 3 cells) after the VAE and 2x2 patches
GRID = (2, 2, 3)
IMAGE_TOKENS = 17                          # CLS + the 4 x 4 patches of the tiny CLIP tower
BLOCKS = 2


def inputs(batch: int = 1, seed: int = 0, guided: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    kwargs = {"prompt_embeds": torch.randn(batch, WAN_TEXT_TOKENS, WAN_TEXT_DIM, generator=g),
              "latents": torch.randn(batch, 4, GRID[0], HEIGHT // 8, WIDTH // 8, generator=g)}
    if guided:
        kwargs["negative_prompt_embeds"] = torch.randn(batch, WAN_TEXT_TOKENS, WAN_TEXT_DIM, generator=g)
    return {**kwargs, "image": toy.image(HEIGHT, WIDTH, seed=seed), "height": HEIGHT, "width": WIDTH,
            "num_frames": FRAMES, "guidance_scale": 5.0 if guided else 1.0, "output_type": "latent"}


def recording(module, monkeypatch) -> list:
    """Record (q, k) in float64 ([B, L, heads, d]) at every attention call of the transformer module ``module``."""
    calls = []
    original = module.dispatch_attention_fn

    def dispatch(query, key, value, **kwargs):
        calls.append((query.double(), key.double()))
        return original(query, key, value, **kwargs)

    monkeypatch.setattr(module, "dispatch_attention_fn", dispatch)
    return calls


def naive(calls, keys: int, guided: bool) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per block, R2G [B, heads, F, h, w] and G2R [B, heads, F, keys] summed over the conditional calls."""
    streams = [(q, k) for q, k in calls if k.shape[1] == keys]     # attn2's calls of this key stream, block by block
    out = {}
    for index, (q, k) in enumerate(streams):
        call, block = divmod(index, BLOCKS)
        if guided and call % 2:                                    # each step: the cond call, then the uncond call
            continue
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
        r2g = torch.softmax(logits, dim=-2).mean(-1).reshape(q.shape[0], -1, *GRID)
        cells = GRID[1] * GRID[2]
        g2r = torch.softmax(logits, dim=-1).reshape(q.shape[0], -1, GRID[0], cells, keys).sum(-2) / cells
        r, g = out.get(block, (0, 0))
        out[block] = (r + r2g, g + g2r)
    return out
