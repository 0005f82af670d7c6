"""Tiny random diffusers pipelines built from config (no weights, no tokenizer files): prompt embeddings are passed
directly, IP-Adapters are built from config (the plain one through diffusers' own ``_load_ip_adapter_weights`` with
a random state dict, the Plus resampler by setting its projection and processors: ``i2am.adapters.diffusers.tiny``)."""
from __future__ import annotations

import copy

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)

from i2am.adapters.diffusers import tiny as diffusers_tiny

TEXT_DIM = 32
CLIP_DIM = 24
TEXT_TOKENS = 7


def unet(in_channels: int = 4, seed: int = 0, **config) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    base = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=in_channels,
                out_channels=4, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=TEXT_DIM,
                attention_head_dim=2, norm_num_groups=16)
    return UNet2DConditionModel(**{**base, **config}).eval()


def sdxl_unet(seed: int = 0) -> UNet2DConditionModel:
    return unet(seed=seed, addition_embed_type="text_time", addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=TEXT_DIM + 6 * 8, transformer_layers_per_block=(1, 2),
                use_linear_projection=True)


def vae(seed: int = 1) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=16, sample_size=32).eval()


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False)


def sd_components(in_channels: int = 4) -> dict:
    return dict(vae=vae(), text_encoder=None, tokenizer=None, unet=unet(in_channels), scheduler=scheduler(),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def sd(kind=StableDiffusionPipeline, in_channels: int = 4):
    return kind(**sd_components(in_channels)).to("cpu")


def sdxl():
    return StableDiffusionXLPipeline(vae=vae(), text_encoder=None, text_encoder_2=None, tokenizer=None,
                                     tokenizer_2=None, unet=sdxl_unet(), scheduler=scheduler(),
                                     force_zeros_for_empty_prompt=False).to("cpu")


def img2img():
    return sd(StableDiffusionImg2ImgPipeline)


def inpaint():
    return sd(StableDiffusionInpaintPipeline, in_channels=9)


def pix2pix():
    return sd(StableDiffusionInstructPix2PixPipeline, in_channels=8)


def controlnet():
    components = sd_components()
    torch.manual_seed(2)
    net = ControlNetModel.from_unet(components["unet"], conditioning_embedding_out_channels=(16, 32)).eval()
    return StableDiffusionControlNetPipeline(**components, controlnet=net).to("cpu")


def load_ip_adapter(pipe, seed: int = 3) -> None:
    """A plain IP-Adapter (4 image tokens) through diffusers' own loader, from a random state dict in the original
    file layout."""
    state = diffusers_tiny.ip_adapter_state_dict(pipe.unet, CLIP_DIM, seed=seed)
    pipe.unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)


def load_ip_adapter_plus(pipe, tokens: int = 16, seed: int = 4) -> None:
    """IP-Adapter Plus: the resampler projection and the IP processors set directly, built from config."""
    diffusers_tiny.load_ip_adapter_plus(pipe.unet, CLIP_DIM, tokens=tokens, seed=seed)


def text(batch: int = 1, seed: int = 10, dim: int = TEXT_DIM) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, TEXT_TOKENS, dim, generator=gen), torch.randn(batch, TEXT_TOKENS, dim, generator=gen))


def ip_embeds(batch: int = 1, seed: int = 11, plus: bool = False, cfg: bool = True) -> list[torch.Tensor]:
    """``ip_adapter_image_embeds``: [negative; positive] per adapter under CFG, else the positive ones."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, 1, 5, CLIP_DIM) if plus else (batch, 1, CLIP_DIM)
    positive = torch.randn(shape, generator=gen)
    return [torch.cat([torch.zeros(shape), positive]) if cfg else positive]


def image(batch: int = 1, seed: int = 12, size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=gen)


def mask(batch: int = 1, size: int = 32) -> torch.Tensor:
    m = torch.zeros(batch, 1, size, size)
    m[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return m


def reference_unet(pipe):
    return copy.deepcopy(pipe.unet)
