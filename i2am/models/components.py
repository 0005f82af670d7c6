"""Builders for the diffusers / transformers modules the adapters are made of, from the configs in ``configs/``.

Nothing here downloads: every module is built from a config object with random weights.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from functools import cache

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from .convert import CONFIG_DIR
from .toy_init import block_average_autoencoder_, fourier_position_embeddings_


@cache
def component_config(component: str, size: str) -> dict:
    """``configs/<component>.json`` entry ``size`` ("full" or "tiny")."""
    table = json.loads((CONFIG_DIR / f"{component}.json").read_text())
    if size not in table:
        raise KeyError(f"{CONFIG_DIR / component}.json has no preset {size!r}; presets: "
                       f"{[k for k in table if k != 'about']}")
    return table[size]


def on_device(device: torch.device):
    """Context in which modules are created directly on ``device`` (``meta``: no memory is allocated)."""
    return torch.device(device) if torch.device(device).type == "meta" else nullcontext()


def build_unet(size: str, **overrides) -> UNet2DConditionModel:
    return UNet2DConditionModel(**{**component_config("unet", size), **overrides})


def build_vae(size: str) -> AutoencoderKL:
    """The SD VAE layout; the tiny preset is the fixed block-mean autoencoder of ``toy_init`` (see there why)."""
    vae = AutoencoderKL(**component_config("vae", size))
    if size == "tiny":
        block_average_autoencoder_(vae)
    return vae


def build_pbe_image_encoder(size: str):
    """diffusers' Paint-by-Example image encoder: CLIP vision tower + mapper + LayerNorm + Linear + uncond vector."""
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPVisionConfig
    cfg = component_config("clip_vision", size)
    return PaintByExampleImageEncoder(CLIPVisionConfig(**cfg["config"]), proj_size=cfg["proj_size"])


def build_dinov2(size: str):
    """transformers ``Dinov2Model``; the tiny preset's patch tokens carry Fourier embeddings of their cell (toy_init)."""
    from transformers import Dinov2Config, Dinov2Model
    model = Dinov2Model(Dinov2Config(**component_config("dinov2", size)["config"]))
    if size == "tiny":
        fourier_position_embeddings_(model)
    return model


class TokenProjector(nn.Module):
    """The custom model's ``MLPProjModel``: LayerNorm -> N x (1-head self-attention + GEGLU) -> Linear."""

    def __init__(self, width: int, out_dim: int, num_blocks: int):
        super().__init__()
        self.norm_in = nn.LayerNorm(width)
        self.blocks = nn.ModuleList([
            BasicTransformerBlock(width, 1, width, activation_fn="geglu", attention_bias=False)
            for _ in range(num_blocks)])
        self.proj_out = nn.Linear(width, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.norm_in(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        return self.proj_out(tokens)


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """[-1, 1] images -> CLIP input: bicubic resize to size x size, CLIP mean/std."""
    mean = images.new_tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = images.new_tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    x = torch.nn.functional.interpolate(images, size=(size, size), mode="bicubic", align_corners=False,
                                        antialias=True)
    return ((x + 1) / 2 - mean) / std


def imagenet_pixels(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[-1, 1] images -> DINOv2 input: bilinear resize to (H, W), ImageNet mean/std."""
    mean = images.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = images.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = torch.nn.functional.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False,
                                        antialias=True)
    return ((x + 1) / 2 - mean) / std


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A {0,1} mask to the latent grid, bilinear with antialiasing (torchvision ``Resize`` on tensors, as in LDM)."""
    return torch.nn.functional.interpolate(mask.float(), size=tuple(size), mode="bilinear", align_corners=False,
                                           antialias=True)
