"""Tiny random diffusion-transformer pipelines built from config (no weights, no text encoders): prompt embeddings
(and pooled embeddings) are passed directly; reference images are small PIL images of chosen sizes."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext  # noqa: F401  (re-exported for tests)

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    Flux2Pipeline,
    Flux2Transformer2DModel,
    FluxKontextPipeline,
    FluxTransformer2DModel,
    QwenImageEditPipeline,
    QwenImageTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from PIL import Image

TEXT_DIM = 32
TEXT_TOKENS = 5


def _seed(seed):
    torch.manual_seed(seed)


def flux_transformer(seed: int = 0, layers: int = 1, single: int = 1) -> FluxTransformer2DModel:
    _seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=layers, num_single_layers=single,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
                                  pooled_projection_dim=TEXT_DIM, axes_dims_rope=[4, 4, 8]).eval()


def flux_vae(seed: int = 1) -> AutoencoderKL:
    _seed(seed)
    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                         latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                         shift_factor=0.0609, scaling_factor=1.5035).eval()


def kontext() -> FluxKontextPipeline:
    return FluxKontextPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=flux_vae(), text_encoder=None,
                               tokenizer=None, text_encoder_2=None, tokenizer_2=None, transformer=flux_transformer())


def flux2_transformer(seed: int = 0, guidance_embeds: bool = True) -> Flux2Transformer2DModel:
    _seed(seed)
    return Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
                                   timestep_guidance_channels=32, axes_dims_rope=[4, 4, 4, 4],
                                   guidance_embeds=guidance_embeds).eval()


def flux2_vae(seed: int = 1) -> AutoencoderKLFlux2:
    _seed(seed)
    return AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3,
                              down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                              block_out_channels=(4, 8), layers_per_block=1, latent_channels=1, norm_num_groups=1,
                              use_quant_conv=False, use_post_quant_conv=False).eval()


def flux2() -> Flux2Pipeline:
    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=flux2_vae(), text_encoder=None,
                         tokenizer=None, transformer=flux2_transformer())


def qwen_transformer(seed: int = 0) -> QwenImageTransformer2DModel:
    _seed(seed)
    return QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                       attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM,
                                       guidance_embeds=False, axes_dims_rope=(8, 4, 4)).eval()


def qwen_vae(seed: int = 1) -> AutoencoderKLQwenImage:
    _seed(seed)
    return AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                  latents_std=[1.0] * 4).eval()


@contextmanager
def small_qwen_references(area: int = 64 * 64):
    """QwenImageEditPipeline resizes every reference to a 1024x1024 area (128x128 tokens); tiny tests shrink it."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

    original = module.calculate_dimensions
    module.calculate_dimensions = lambda _area, ratio: original(area, ratio)
    try:
        yield
    finally:
        module.calculate_dimensions = original


def qwen_edit() -> QwenImageEditPipeline:
    return QwenImageEditPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=qwen_vae(), text_encoder=None,
                                 tokenizer=None, processor=None, transformer=qwen_transformer())


def sd3_transformer(seed: int = 0) -> SD3Transformer2DModel:
    _seed(seed)
    return SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8,
                                 num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=TEXT_DIM,
                                 pooled_projection_dim=TEXT_DIM, out_channels=4).eval()


def sd3() -> StableDiffusion3Pipeline:
    _seed(1)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=4, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035).eval()
    return StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None,
                                    tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None,
                                    tokenizer_3=None, transformer=sd3_transformer())


def text(batch: int = 1, seed: int = 10, tokens: int = TEXT_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, TEXT_DIM, generator=g), torch.randn(batch, TEXT_DIM, generator=g)


def image(height: int, width: int, seed: int = 12) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def flux2_klein():
    from diffusers import Flux2KleinPipeline

    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=flux2_vae(), text_encoder=None,
                              tokenizer=None, transformer=flux2_transformer(guidance_embeds=False))
