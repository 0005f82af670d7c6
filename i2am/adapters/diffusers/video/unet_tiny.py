"""Image-to-video UNet pipelines built from config with random weights (nothing downloaded, CPU, seconds): Stable
Video Diffusion and I2VGen-XL, whose UNets fold the frames into the batch. The sizes are those of diffusers' own fast
tests, with the widths raised so that the tiny attention layers have several heads."""
from __future__ import annotations

import torch

UNET_VIDEO_PIPELINES = ("StableVideoDiffusionPipeline", "I2VGenXLPipeline")
CLIP_VISION = dict(hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
                   intermediate_size=37, patch_size=32)   # SVD resizes to 224


def _clip_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VISION))


def _clip_processor():
    from transformers import CLIPImageProcessor

    size = CLIP_VISION["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _svd():
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )

    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=4, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                                       latent_channels=4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                                       steps_offset=1, timestep_spacing="leading", timestep_type="continuous",
                                       use_karras_sigmas=True)
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=_clip_vision(), unet=unet, scheduler=scheduler,
                                        feature_extractor=_clip_processor())


def _i2vgen_xl():
    from diffusers import AutoencoderKL, DDIMScheduler, I2VGenXLPipeline
    from diffusers.models.unets import I2VGenXLUNet
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = I2VGenXLUNet(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                        out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=32,
                        attention_head_dim=8, num_attention_heads=None, norm_num_groups=4)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        latent_channels=4, norm_num_groups=2)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, vocab_size=1000, max_position_embeddings=16,
                                        projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    return I2VGenXLPipeline(vae=vae, text_encoder=text, tokenizer=None, image_encoder=_clip_vision(),
                            feature_extractor=_clip_processor(), unet=unet, scheduler=scheduler)


def build_unet_video_pipeline(pipeline: str, seed: int = 0):
    """A tiny image-to-video UNet pipeline of ``UNET_VIDEO_PIPELINES`` on the CPU, in eval mode."""
    if pipeline not in UNET_VIDEO_PIPELINES:
        raise ValueError(f"no from-config build for {pipeline!r}; image-to-video UNet pipelines: "
                         f"{list(UNET_VIDEO_PIPELINES)}")
    torch.manual_seed(seed)
    pipe = _svd() if pipeline == "StableVideoDiffusionPipeline" else _i2vgen_xl()
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return pipe
