"""Builders for the diffusers / transformers modules the adapters are made of, from the configs in ``configs/``.

Nothing here downloads: every module is built from a config object with random weights.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from functools import cache

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from i2am.adapters._convert import CONFIG_DIR
from i2am.adapters._toy_init import block_average_autoencoder_, fourier_position_embeddings_


@cache
def component_config(component: str, size: str) -> dict:
    """``configs/<component>.json`` entry ``size`` ("full", "tiny", "small" or a named variant such as "tiny-f4")."""
    table = json.loads((CONFIG_DIR / f"{component}.json").read_text())
    if size not in table:
        raise KeyError(f"{CONFIG_DIR / component}.json has no preset {size!r}; presets: "
                       f"{[k for k in table if k != 'about']}")
    return table[size]


COMPONENTS = ("unet", "vae", "clip_vision", "dinov2", "warp")   # what ``create_model(..., <component>={...})`` sets


def plain(value):
    """Mappings -> dicts and sequences -> lists, recursively (OmegaConf containers from Hydra included)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


def resolve_component(component: str, size: str, overrides: Mapping | None = None) -> dict:
    """The preset ``size`` of ``component`` with ``overrides`` applied (a copy; the presets stay unchanged).

    For presets with a nested ``config`` (clip_vision, dinov2) a key the top level does not have goes into
    ``config`` (``dinov2={"hidden_size": 64}``); ``config={...}`` sets nested keys explicitly.
    """
    preset = copy.deepcopy(component_config(component, size))
    for key, value in plain(overrides or {}).items():
        if key == "config" and isinstance(value, dict):
            preset["config"].update(value)
        elif key in preset or "config" not in preset:
            preset[key] = value
        else:
            preset["config"][key] = value
    return preset


def split_components(overrides: dict) -> tuple[dict, dict]:
    """(component overrides, the other keyword arguments) of a factory call."""
    components = {k: plain(overrides.pop(k)) for k in list(overrides) if k in COMPONENTS}
    return components, overrides


def on_device(device: torch.device):
    """Context in which modules are created directly on ``device`` (``meta``: no memory is allocated)."""
    return torch.device(device) if torch.device(device).type == "meta" else nullcontext()


def build_unet(size: str, overrides: Mapping | None = None, **family) -> UNet2DConditionModel:
    """The UNet preset ``size`` with the user's ``overrides`` (any ``UNet2DConditionModel`` argument) and the
    family's own settings (``in_channels``, ``cross_attention_dim``) on top."""
    return UNet2DConditionModel(**{**resolve_component("unet", size, overrides), **family})


BLOCK_AVERAGE_VAES = ("tiny", "tiny-f4")   # vae.json presets built as toy_init's fixed block-mean autoencoder


def build_vae(size: str, overrides: Mapping | None = None) -> AutoencoderKL:
    """The SD VAE layout. A tiny model whose VAE is exactly one of the ``BLOCK_AVERAGE_VAES`` presets (8x8 or 4x4
    blocks) gets the fixed block-mean autoencoder of ``toy_init`` (see there why); any other architecture keeps
    diffusers' random initialisation (a checkpoint replaces it)."""
    config = resolve_component("vae", size, overrides)
    vae = AutoencoderKL(**config)
    if size == "tiny" and any(config == component_config("vae", p) for p in BLOCK_AVERAGE_VAES):
        block_average_autoencoder_(vae)
    return vae


def build_pbe_image_encoder(size: str, overrides: Mapping | None = None):
    """diffusers' Paint-by-Example image encoder: CLIP vision tower + mapper + LayerNorm + Linear + uncond vector."""
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPVisionConfig
    cfg = resolve_component("clip_vision", size, overrides)
    return PaintByExampleImageEncoder(CLIPVisionConfig(**cfg["config"]), proj_size=cfg["proj_size"])


def build_dinov2(size: str, overrides: Mapping | None = None):
    """transformers ``Dinov2Model``; the tiny preset's patch tokens carry Fourier embeddings of their cell (toy_init:
    the toy references' layout)."""
    from transformers import Dinov2Config, Dinov2Model
    model = Dinov2Model(Dinov2Config(**resolve_component("dinov2", size, overrides)["config"]))
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


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# How each original resizes an image for its reference encoder (docs/sampling.md): PIL's ``resize`` (bicubic,
# area-aware = antialiased) in Paint-by-Example's script; torchvision ``Resize`` on a tensor (bilinear, and no
# antialiasing in the torchvision releases those repositories pin, < 0.17) in DCI-VTON and StableVITON;
# torchvision ``Resize(..., antialias=True)`` bilinear for the custom model's DINOv2 input.
RESIZES = {"pil_bicubic": ("bicubic", True), "tensor_bilinear": ("bilinear", False),
           "bilinear_antialias": ("bilinear", True)}


def resize_images(images: torch.Tensor, size: tuple[int, int], resize: str) -> torch.Tensor:
    if resize not in RESIZES:
        raise ValueError(f"resize={resize!r}; choose from {sorted(RESIZES)}")
    mode, antialias = RESIZES[resize]
    return torch.nn.functional.interpolate(images, size=tuple(size), mode=mode, align_corners=False,
                                           antialias=antialias)


def normalise(images01: torch.Tensor, mean, std) -> torch.Tensor:
    return (images01 - images01.new_tensor(mean).view(1, 3, 1, 1)) / images01.new_tensor(std).view(1, 3, 1, 1)


def clip_pixels(images: torch.Tensor, size: int, resize: str = "pil_bicubic") -> torch.Tensor:
    """[-1, 1] images -> CLIP input: the whole image resized to size x size (no crop, as all three originals do),
    then CLIP mean/std. ``resize``: a key of ``RESIZES``."""
    return normalise((resize_images(images, (size, size), resize) + 1) / 2, CLIP_MEAN, CLIP_STD)


def dinov2_pixels(images: torch.Tensor, size: tuple[int, int], normalisation: str = "none") -> torch.Tensor:
    """[-1, 1] images -> DINOv2 input: bilinear antialiased resize to (H, W), then ``normalisation``: "none" (the
    custom model's original feeds the [-1, 1] garment as it is, in training and at test time) or "imagenet"
    (DINOv2's own ImageNet mean/std on [0, 1] pixels)."""
    x = resize_images(images, size, "bilinear_antialias")
    if normalisation == "none":
        return x
    if normalisation == "imagenet":
        return normalise((x + 1) / 2, IMAGENET_MEAN, IMAGENET_STD)
    raise ValueError(f"reference normalisation={normalisation!r}; choose 'none' (the original) or 'imagenet'")


MASK_RESIZES = ("bilinear", "nearest")


def resize_mask(mask: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """A {0,1} mask to the latent grid. "bilinear": torchvision ``Resize`` on a tensor as LDM-based code calls it
    (PBE, DCI-VTON, StableVITON; no antialiasing in torchvision < 0.17); "nearest": ``F.interpolate(mode="nearest")``
    (the custom model)."""
    if mode not in MASK_RESIZES:
        raise ValueError(f"mask resize {mode!r}; choose from {MASK_RESIZES}")
    if mode == "nearest":
        return torch.nn.functional.interpolate(mask.float(), size=tuple(size), mode="nearest")
    return torch.nn.functional.interpolate(mask.float(), size=tuple(size), mode="bilinear", align_corners=False,
                                           antialias=False)
