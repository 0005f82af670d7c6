"""The models and inputs every benchmark builds: random weights from config, seeded, so two processes (i2am in the
project's venv, a peer in .venv-peers) build the same weights and inputs. Imports torch and diffusers only."""
from __future__ import annotations

import torch
from diffusers import FluxTransformer2DModel, UNet2DConditionModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

UNET_SIZES = {
    "tiny": dict(block_out_channels=(32, 32, 64, 64), cross_attention_dim=32, attention_head_dim=8,
                 norm_num_groups=8),
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 norm_num_groups=32),
}

# FLUX-like transformers. "flux1" is FLUX.1's width and depth (19 double + 38 single blocks, 24 heads x 128) with
# 512 text tokens and a 64x64 token grid (a 1024x1024 image); Kontext adds a reference grid of the same size.
FLUX_SIZES = {
    "cpu": dict(layers=2, single=4, heads=4, text=64, grid=32, joint=256, pooled=64),
    "flux1": dict(layers=19, single=38, heads=24, text=512, grid=64, joint=4096, pooled=768),
}


def unet(size: str = "tiny", sample_size: int = 64) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(in_channels=4, out_channels=4, layers_per_block=2, sample_size=sample_size,
                                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                                **UNET_SIZES[size]).eval()


def unet_inputs(model: UNet2DConditionModel, latent: tuple[int, int], tokens: int = 77, cfg: bool = True):
    """Latents [B, 4, h, w] and text embeddings (unconditional row first when ``cfg``, as StableDiffusionPipeline
    stacks them), both seeded."""
    gen = torch.Generator().manual_seed(1)
    batch = 2 if cfg else 1
    x = torch.randn(1, 4, *latent, generator=gen).repeat(batch, 1, 1, 1)
    ctx = torch.randn(batch, tokens, model.config.cross_attention_dim, generator=gen)
    return x, ctx


def flux(size: str = "cpu", **overrides) -> tuple[FluxTransformer2DModel, dict]:
    """A FLUX-like transformer and its shape; ``overrides`` replace entries of FLUX_SIZES[size] (e.g. layers=1)."""
    s = {**FLUX_SIZES[size], **overrides}
    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=s["layers"],
                                   num_single_layers=s["single"], attention_head_dim=128,
                                   num_attention_heads=s["heads"], joint_attention_dim=s["joint"],
                                   pooled_projection_dim=s["pooled"], guidance_embeds=True,
                                   axes_dims_rope=[16, 56, 56])
    return model.eval(), s


def flux_inputs(model, s: dict, reference: bool, device="cpu", dtype=torch.float32, grid=None) -> dict:
    """Transformer kwargs for one step: text + generated tokens (+ a reference grid of the same size, as FLUX.1
    Kontext packs an edit, when ``reference``). ``grid`` (h, w) overrides the square grid of the size."""
    h, w = grid or (s["grid"], s["grid"])
    gen = torch.Generator().manual_seed(1)
    ids = [torch.cartesian_prod(torch.zeros(1), torch.arange(float(h)), torch.arange(float(w)))]
    if reference:
        ids.append(torch.cartesian_prod(torch.ones(1), torch.arange(float(h)), torch.arange(float(w))))
    cfg = model.config
    tokens = h * w * len(ids)
    return dict(hidden_states=torch.randn(1, tokens, cfg.in_channels, generator=gen).to(device, dtype),
                encoder_hidden_states=torch.randn(1, s["text"], cfg.joint_attention_dim, generator=gen).to(device,
                                                                                                           dtype),
                pooled_projections=torch.randn(1, cfg.pooled_projection_dim, generator=gen).to(device, dtype),
                img_ids=torch.cat(ids).to(device), txt_ids=torch.zeros(s["text"], 3, device=device),
                guidance=torch.full((1,), 3.5, device=device), return_dict=False)


def flux_steps(model, x: dict, steps: int, device="cpu") -> None:
    with torch.no_grad():
        for i in range(steps):
            model(**x, timestep=torch.full((1,), 1.0 - i / steps, device=device))


def unet_steps(model, x, ctx, steps: int) -> None:
    with torch.no_grad():
        for s in range(steps):
            model(x, 999 - 20 * s, ctx)
