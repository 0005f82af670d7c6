"""Tiny from-config builds (random weights, CPU, no text encoders, nothing downloaded) of the image-to-video pipelines
``i2am.trace`` refuses (``i2am.engine.refused_pipelines``), so that the refusal is tested on the real classes. The
sizes are those of diffusers' own fast tests: HunyuanVideo-1.5 image-to-video with a 2-layer SigLIP vision tower on
16 x 16 images in 4 x 4 patches (16 image tokens)."""
from __future__ import annotations

import torch

REFUSED_VIDEO_PIPELINES = ("HunyuanVideo15ImageToVideoPipeline",)
HUNYUAN_TEXT_DIM, HUNYUAN_BYT5_DIM, HUNYUAN_IMAGE_DIM = 16, 32, 12


def build_refused_video_pipeline(pipeline: str, seed: int = 0):
    """A tiny ``diffusers.<pipeline>`` for one of ``REFUSED_VIDEO_PIPELINES``."""
    builds = {"HunyuanVideo15ImageToVideoPipeline": _hunyuan_video15}
    if pipeline not in builds:
        raise ValueError(f"no from-config build for {pipeline!r}; refused video pipelines: {list(builds)}")
    torch.manual_seed(seed)
    return builds[pipeline]()


def _hunyuan_video15():
    import diffusers
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import SiglipVisionConfig, SiglipVisionModel

    latent = 4
    transformer = diffusers.HunyuanVideo15Transformer3DModel(
        in_channels=2 * latent + 1, out_channels=latent, num_attention_heads=2, attention_head_dim=8, num_layers=2,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=HUNYUAN_TEXT_DIM,
        text_embed_2_dim=HUNYUAN_BYT5_DIM, image_embed_dim=HUNYUAN_IMAGE_DIM, rope_axes_dim=(2, 2, 4),
        target_size=16, task_type="i2v")
    vae = diffusers.AutoencoderKLHunyuanVideo15(
        in_channels=3, out_channels=3, latent_channels=latent, block_out_channels=(16, 16), layers_per_block=1,
        spatial_compression_ratio=4, temporal_compression_ratio=2, downsample_match_channel=False,
        upsample_match_channel=False)
    image_encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=HUNYUAN_IMAGE_DIM, intermediate_size=16,
                                                         num_hidden_layers=2, num_attention_heads=2, image_size=16,
                                                         patch_size=4))
    return diffusers.HunyuanVideo15ImageToVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=transformer.eval(), vae=vae.eval(),
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None, tokenizer_2=None,
        guider=ClassifierFreeGuidance(guidance_scale=1.0), image_encoder=image_encoder.eval(), feature_extractor=None)
