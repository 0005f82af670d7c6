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


# Wan-2.1-like image-to-video pipelines. "wan480p" is Wan 2.1 I2V-14B's transformer (40 blocks, 40 heads x 128,
# FFN 13,824, 4,096-wide text, 1,280-wide CLIP tokens) on a 480x832, 81-frame video: 21 latent frames of 60x104
# (VAE time / 4, space / 8), 2x2 patches, 21 x 30 x 52 = 32,760 video tokens, 257 CLIP image tokens (CLS + 16x16),
# 512 text tokens. "cpu" keeps the token layout (257 image + 512 text keys, head width 128) and shrinks the rest.
# The VAE and the CLIP tower are small in both: they run outside the attention the capture reads; the CLIP tower
# keeps the 257 tokens, the VAE the latent shape.
WAN_SIZES = {
    "cpu": dict(blocks=2, heads=2, ffn=1024, text_dim=64, image_dim=64, frames=17, height=192, width=320),
    "wan480p": dict(blocks=40, heads=40, ffn=13824, text_dim=4096, image_dim=1280, frames=81, height=480, width=832),
}
WAN_TEXT_TOKENS = 512      # the text length Wan's attention processor hard-codes


def wan_tokens(s: dict) -> dict:
    """Latent frames, the token grid per frame and the video token count of a WAN_SIZES entry."""
    frames = (s["frames"] - 1) // 4 + 1
    grid = (s["height"] // 16, s["width"] // 16)
    return dict(frames=frames, grid=grid, video=frames * grid[0] * grid[1], image=257, text=WAN_TEXT_TOKENS)


def wan(size: str = "cpu", device="cpu", dtype=torch.float32, **overrides):
    """A WanImageToVideoPipeline with random weights (seeded) and its shape; ``overrides`` replace entries of
    WAN_SIZES[size]. The transformer is built on ``device`` in ``dtype`` (at "wan480p": 16.4 B parameters, 30.5 GiB
    in bf16)."""
    import diffusers
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    s = {**WAN_SIZES[size], **overrides}
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                     latents_std=[1.0] * 4)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=s["image_dim"], num_hidden_layers=1,
                                                     num_attention_heads=1, image_size=32, patch_size=2,
                                                     intermediate_size=s["image_dim"]))
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = diffusers.WanTransformer3DModel(
                patch_size=(1, 2, 2), num_attention_heads=s["heads"], attention_head_dim=128, in_channels=4 + 4 + 4,
                out_channels=4, text_dim=s["text_dim"], freq_dim=256, ffn_dim=s["ffn"], num_layers=s["blocks"],
                cross_attn_norm=True, qk_norm="rms_norm_across_heads", image_dim=s["image_dim"],
                added_kv_proj_dim=s["heads"] * 128)
    finally:
        torch.set_default_dtype(default)
    pipe = diffusers.WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, vae=vae.eval().to(device), transformer=transformer.eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), image_encoder=image_encoder.eval().to(device),
        image_processor=CLIPImageProcessor(crop_size=32, size=32))
    pipe.set_progress_bar_config(disable=True)
    _encode_once(pipe.vae)
    return pipe, s


def _encode_once(vae) -> None:
    """Every call of a benchmark encodes the same condition video (the reference frame and zeros): encode it once
    and hand back that result while the input is equal, so the timings are the denoising loop's, not the VAE's."""
    original, held = vae.encode, {}

    def encode(x, *args, **kwargs):
        if "input" not in held or held["input"].shape != x.shape or not torch.equal(held["input"], x):
            held["input"], held["output"] = x.clone(), original(x, *args, **kwargs)
        return held["output"]

    vae.encode = encode


def wan_inputs(s: dict, device="cpu", dtype=torch.float32) -> dict:
    """Pipeline kwargs for one seeded video call without CFG (one transformer call per step), latents out."""
    gen = torch.Generator().manual_seed(1)
    t = wan_tokens(s)
    image = torch.rand(1, 3, s["height"], s["width"], generator=gen)
    return dict(image=image, height=s["height"], width=s["width"], num_frames=s["frames"], guidance_scale=1.0,
                prompt_embeds=torch.randn(1, WAN_TEXT_TOKENS, s["text_dim"], generator=gen).to(device, dtype),
                latents=torch.randn(1, 4, t["frames"], s["height"] // 8, s["width"] // 8, generator=gen).to(device,
                                                                                                           dtype),
                output_type="latent")


def wan_steps(pipe, x: dict, steps: int) -> None:
    with torch.no_grad():
        pipe(**x, num_inference_steps=steps)
