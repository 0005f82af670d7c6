"""Image-to-video pipelines built from config, without text encoders (nothing downloaded): random weights, CPU,
seconds. Wan 2.1 image-to-video: a 2-block ``WanTransformer3DModel`` of 2 heads of 8 channels whose second
cross-attention reads CLIP image tokens (``image_dim``), a 2-layer CLIP vision tower on 8x8 crops in 2x2 patches
(17 tokens: CLS and a 4x4 grid) and Wan's causal video VAE at base width 3 (time / 4, space / 8). ChronoEdit (an
image editor that generates a short video from the image) has the same components with its own transformer class.

HunyuanVideo-1.5 image-to-video (``build_hunyuan_video15``): a 2-block ``HunyuanVideo15Transformer3DModel`` of 2 heads
of 8 channels (patch 1), a 2-layer SigLIP vision tower on 16 x 16 crops in 4 x 4 patches (16 image tokens, a 4 x 4
grid), its VAE compressing time by 2 and space by 4, target size 16 pixels (a 32 x 48 image is generated at 12 x 16)
and a CFG guider at scale 6; its call takes text and glyph embeddings with their masks (``i2am.toy.prompt``)."""
from __future__ import annotations

import torch

from i2am.engine.wan_layers import WAN_TEXT_TOKENS

__all__ = ["PIPELINES", "WAN_TEXT_TOKENS", "build_skyreels_v2_i2v", "build_video_pipeline"]

PIPELINES = ("WanImageToVideoPipeline", "ChronoEditPipeline")
TRANSFORMERS = {"WanImageToVideoPipeline": "WanTransformer3DModel",
                "ChronoEditPipeline": "ChronoEditTransformer3DModel"}
WAN_TEXT_DIM = 16
HUNYUAN_VIDEO15 = "HunyuanVideo15ImageToVideoPipeline"
HUNYUAN_TEXT_DIM, HUNYUAN_GLYPH_DIM, HUNYUAN_IMAGE_DIM = 16, 32, 12   # Qwen2.5-VL text, byT5 glyph, SigLIP widths


def build_video_pipeline(pipeline: str = "WanImageToVideoPipeline", seed: int = 0):
    """A tiny ``diffusers.<pipeline>`` with random weights on the CPU (its call takes ``prompt_embeds`` of
    ``WAN_TEXT_TOKENS`` x ``WAN_TEXT_DIM``: it has no tokenizer)."""
    import diffusers
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    if pipeline not in PIPELINES:
        raise ValueError(f"no from-config build for {pipeline!r}; video pipelines: {list(PIPELINES)}")
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                     latents_std=[1.0] * 4)
    latent = vae.config.z_dim
    transformer = getattr(diffusers, TRANSFORMERS[pipeline])(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=latent + 4 + latent,
        out_channels=latent, text_dim=WAN_TEXT_DIM, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=8, added_kv_proj_dim=2 * 8)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                                     image_size=8, intermediate_size=16, patch_size=2))
    return getattr(diffusers, pipeline)(
        tokenizer=None, text_encoder=None, vae=vae.eval(), transformer=transformer.eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0), image_encoder=image_encoder.eval(),
        image_processor=CLIPImageProcessor(crop_size=8, size=8))


def build_hunyuan_video15(seed: int = 0, guidance_scale: float = 6.0):
    """A tiny ``diffusers.HunyuanVideo15ImageToVideoPipeline`` with random weights on the CPU (no text encoders: its
    call takes ``prompt_embeds`` of width ``HUNYUAN_TEXT_DIM`` and ``prompt_embeds_2`` of ``HUNYUAN_GLYPH_DIM``, with
    their masks); ``guidance_scale`` 1 turns CFG off."""
    import diffusers
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    latent = 4
    transformer = diffusers.HunyuanVideo15Transformer3DModel(
        in_channels=2 * latent + 1, out_channels=latent, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=HUNYUAN_TEXT_DIM,
        text_embed_2_dim=HUNYUAN_GLYPH_DIM, image_embed_dim=HUNYUAN_IMAGE_DIM, rope_axes_dim=(2, 2, 4),
        target_size=16, task_type="i2v")
    vae = diffusers.AutoencoderKLHunyuanVideo15(
        in_channels=3, out_channels=3, latent_channels=latent, block_out_channels=(16, 16), layers_per_block=1,
        spatial_compression_ratio=4, temporal_compression_ratio=2, downsample_match_channel=False,
        upsample_match_channel=False)
    vision = SiglipVisionConfig(hidden_size=HUNYUAN_IMAGE_DIM, intermediate_size=16, num_hidden_layers=2,
                                num_attention_heads=2, image_size=16, patch_size=4)
    size = vision.image_size
    return diffusers.HunyuanVideo15ImageToVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=transformer.eval(), vae=vae.eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None, tokenizer_2=None,
        guider=ClassifierFreeGuidance(guidance_scale=guidance_scale), image_encoder=SiglipVisionModel(vision).eval(),
        feature_extractor=SiglipImageProcessor(size={"height": size, "width": size}))


def build_skyreels_v2_i2v(seed: int = 0):
    """SkyReels-V2's image-to-video transformer is Wan 2.1's (same config, same attention): the tiny Wan I2V's
    components, its transformer rebuilt as a ``SkyReelsV2Transformer3DModel`` and a CLIP tower with projection."""
    from diffusers import SkyReelsV2ImageToVideoPipeline, SkyReelsV2Transformer3DModel
    from transformers import CLIPVisionModelWithProjection

    wan = build_video_pipeline("WanImageToVideoPipeline", seed=seed)
    torch.manual_seed(seed)
    transformer = SkyReelsV2Transformer3DModel.from_config(dict(wan.transformer.config))
    image_encoder = CLIPVisionModelWithProjection(wan.image_encoder.config)
    return SkyReelsV2ImageToVideoPipeline(tokenizer=None, text_encoder=None, image_encoder=image_encoder.eval(),
                                          image_processor=wan.image_processor, transformer=transformer.eval(),
                                          vae=wan.vae, scheduler=wan.scheduler)
