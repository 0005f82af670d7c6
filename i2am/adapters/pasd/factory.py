"""Building PASD adapters: from configs (random weights, any device), from a release plus a local SD-1.5 folder."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from i2am.adapters._components import on_device
from i2am.adapters.pasd import checkpoint as release
from i2am.adapters.pasd import configs
from i2am.adapters.pasd.adapter import PASDAdapter
from i2am.adapters.pasd.controlnet import PixelAwareControlNetModel
from i2am.adapters.pasd.text import PromptEncoder
from i2am.adapters.pasd.unet import PixelAwareUNet2DConditionModel

PRESETS = {
    "full": {"unet": configs.SD15_UNET, "cond": configs.DEGRADATION_REMOVAL_CHANNELS, "vae": configs.SD15_VAE,
             "text": configs.SD15_TEXT_ENCODER, "image_size": (512, 512)},
    "tiny": {"unet": configs.TINY_UNET, "cond": configs.TINY_DEGRADATION_REMOVAL_CHANNELS, "vae": configs.TINY_VAE,
             "text": configs.TINY_TEXT_ENCODER, "image_size": (128, 128)},
}


def load_base_components(base_model: str | Path) -> tuple[AutoencoderKL, PromptEncoder, dict]:
    """VAE, prompt encoder and scheduler config of a local SD-1.5 diffusers folder; never contacts a hub."""
    vae = AutoencoderKL.from_pretrained(release.base_folder(base_model, "vae"), local_files_only=True)
    scheduler_file = release.base_folder(base_model, "scheduler") / "scheduler_config.json"
    return vae, PromptEncoder.from_sd_folder(base_model), json.loads(scheduler_file.read_text())


def build_pasd(size: str = "full", device="cpu", variant: str = "pasd", base_model: str | Path | None = None,
               **adapter_kwargs) -> PASDAdapter:
    """A PASD adapter with random UNet/ControlNet weights; VAE, text encoder, tokenizer and scheduler config from
    ``base_model`` (a local SD-1.5 diffusers folder) when given, else built from config with random weights.
    ``device="meta"`` allocates nothing (for checkpoint-layout checks)."""
    release.require_supported(variant, "build_pasd")
    if size not in PRESETS:
        raise ValueError(f"build_pasd: size must be one of {list(PRESETS)}, got {size!r}")
    preset = PRESETS[size]
    device = torch.device(device)
    if base_model is not None and device.type == "meta":
        raise ValueError("build_pasd: base_model weights cannot be loaded on the meta device")
    with on_device(device):
        unet = PixelAwareUNet2DConditionModel.from_config(preset["unet"])
        controlnet = PixelAwareControlNetModel.from_config(
            configs.controlnet_config(preset["unet"], preset["cond"], use_rrdb=variant == "pasd_rrdb"))
        vae = AutoencoderKL.from_config(preset["vae"]) if base_model is None else None
        prompt_encoder = PromptEncoder.from_config(preset["text"]) if base_model is None else None
    if base_model is not None:
        vae, prompt_encoder, scheduler_config = load_base_components(base_model)
        adapter_kwargs.setdefault("scheduler_config", scheduler_config)
    adapter_kwargs.setdefault("image_size", preset["image_size"])
    adapter = PASDAdapter(unet, controlnet, vae, prompt_encoder, size=size, variant=variant, **adapter_kwargs)
    return adapter.requires_grad_(False) if device.type == "meta" else adapter.to(device)


def pasd_from_release(checkpoint: str | Path, base_model: str | Path, device="cpu", **adapter_kwargs) -> PASDAdapter:
    """Full-size PASD from a release folder (``runs/pasd/checkpoint-100000``) and a local SD-1.5 folder.

    The variant is read from the release (``pasd`` or ``pasd_rrdb``; the light variants are rejected). The UNet and
    ControlNet are built on the meta device and take the release's tensors directly; every key must fit."""
    state, folder_configs = release.read_release(checkpoint)
    variant = release.detect_variant(state, folder_configs["controlnet"])
    release.require_supported(variant, str(checkpoint))
    vae, prompt_encoder, scheduler_config = load_base_components(base_model)
    adapter_kwargs.setdefault("scheduler_config", scheduler_config)
    adapter = build_pasd("full", "meta", variant, **adapter_kwargs)
    adapter.load_checkpoint(state, strict=True)
    adapter.vae, adapter.prompt_encoder = vae, prompt_encoder
    return adapter.to(device)
