"""StableVITON: a 13-channel SD-1.x UNet (initialised from PBE) plus a spatial encoder and 9 warp blocks.

UNet input: [noisy 4, agnostic latent 4, agnostic mask 1 (1 = keep), DensePose latent 4]; one CLIP token.
The spatial encoder is a copy of the UNet encoder that takes the same input plus the garment latent (through a
zero conv after its first conv). Before decoder output blocks 3..11 a zero cross-attention ("warp") block lets
the decoder features attend to the spatial-encoder features of the same resolution: h += zero_conv(warp(h, hint)).
Sampling: no CFG, DDIM 50, eta 0, start code q_sample(z, 999) of the person latent. Loads ``VITONHD.ckpt``.
"""
from __future__ import annotations

import re

import torch
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from torch import nn

from i2am.adapters import _unet_passes as unet_passes
from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters._checkpoint import SCHEDULE_BUFFER_KEYS, ldm_schedule_buffers
from i2am.adapters._components import (
    build_pbe_image_encoder,
    build_unet,
    build_vae,
    clip_pixels,
    on_device,
    resize_mask,
    resolve_component,
)
from i2am.adapters._convert import Rule, ldm_unet_rules, ldm_vae_rules, renamed
from i2am.adapters._registry import register_sizes
from i2am.adapters._unet_base import NUM_LEVELS, UNetAdapter
from i2am.adapters.pbe import POSITION_IDS, clip_image_encoder_rules
from i2am.data import schema
from i2am.engine.layers import LayerSpec

FIRST_WARPED_BLOCK = 3        # warp blocks sit before LDM output blocks 3..11
WARP_HEADS = 8
SRAM_WARP_BLOCK = 4           # the official G2R ULAM / HLAM / SRAM layer
WARP_DEFAULTS = {"first_block": FIRST_WARPED_BLOCK, "heads": WARP_HEADS}   # the ``warp`` component's settings


def skip_channels(block_out_channels, layers_per_block: int) -> list[int]:
    """Channels of the 12 encoder features (LDM ``input_blocks`` outputs) of an SD-1.x UNet."""
    chans = [block_out_channels[0]]
    for level, c in enumerate(block_out_channels):
        chans += [c] * layers_per_block + ([c] if level < len(block_out_channels) - 1 else [])
    return chans


def decoder_input_channels(block_out_channels, layers_per_block: int) -> list[int]:
    """Channels of h entering each decoder output block (before the skip concatenation)."""
    rev = list(reversed(block_out_channels))
    return [rev[max(b - 1, 0)] if j == 0 else rev[b] for b in range(len(rev)) for j in range(layers_per_block + 1)]


class SpatialEncoder(nn.Module):
    """StableVITON's ``NoZeroConvControlNet``: the UNet encoder on the same input, plus the garment latent added
    after the first conv through a zero-initialised conv. Yields the 12 encoder features."""

    def __init__(self, size: str, in_channels: int, cross_attention_dim: int, unet_overrides: dict | None = None):
        super().__init__()
        full = build_unet(size, unet_overrides, in_channels=in_channels, cross_attention_dim=cross_attention_dim)
        self.conv_in, self.time_proj, self.time_embedding = full.conv_in, full.time_proj, full.time_embedding
        self.down_blocks, self.mid_block = full.down_blocks, full.mid_block   # mid block: in the file, unused
        self.cond_conv_in = nn.Conv2d(4, full.config.block_out_channels[0], 3, padding=1)
        nn.init.zeros_(self.cond_conv_in.weight)
        nn.init.zeros_(self.cond_conv_in.bias)

    def forward(self, sample, t, context, garment_latent) -> tuple[torch.Tensor, ...]:
        emb = unet_passes.time_embedding(self, t, sample.shape[0], sample.dtype)
        _, skips = unet_passes.encode(self, sample, emb, context, self.cond_conv_in(garment_latent), run_mid=False)
        return skips


class WarpedUNet(nn.Module):
    """The denoiser StableVITON calls once per step: spatial encoder + UNet with warp blocks."""

    def __init__(self, size: str, in_channels: int, cross_attention_dim: int, unet_overrides: dict | None = None,
                 warp: dict | None = None):
        super().__init__()
        warp = {**WARP_DEFAULTS, **(warp or {})}
        unknown = sorted(set(warp) - set(WARP_DEFAULTS))
        if unknown:
            raise ValueError(f"warp component: unknown keys {unknown}; known: {sorted(WARP_DEFAULTS)}")
        self.first_warped_block, heads = int(warp["first_block"]), int(warp["heads"])
        self.unet = build_unet(size, unet_overrides, in_channels=in_channels, cross_attention_dim=cross_attention_dim)
        self.spatial_encoder = SpatialEncoder(size, in_channels, cross_attention_dim, unet_overrides)
        cfg = self.unet.config
        queries = decoder_input_channels(cfg.block_out_channels, cfg.layers_per_block)[self.first_warped_block:]
        skips = skip_channels(cfg.block_out_channels, cfg.layers_per_block)
        keys = [skips[len(skips) - 1 - (i + self.first_warped_block)] for i in range(len(queries))]
        self.warp_blocks = nn.ModuleList([
            Transformer2DModel(num_attention_heads=heads, attention_head_dim=q // heads, in_channels=q,
                               cross_attention_dim=k, norm_num_groups=cfg.norm_num_groups)
            for q, k in zip(queries, keys)])
        self.warp_zero_convs = nn.ModuleList([nn.Conv2d(q, q, 1) for q in queries])
        for module in [*self.warp_zero_convs, *(b.proj_out for b in self.warp_blocks)]:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, sample, t, context, garment_latent) -> torch.Tensor:
        hints = self.spatial_encoder(sample, t, context, garment_latent)
        emb = unet_passes.time_embedding(self.unet, t, sample.shape[0], sample.dtype)
        h, skips = unet_passes.encode(self.unet, sample, emb, context)

        def warp(index: int, h: torch.Tensor) -> torch.Tensor:
            i = index - self.first_warped_block
            if i < 0:
                return h
            hint = hints[len(hints) - 1 - index].flatten(2).transpose(1, 2)        # b c h w -> b (h w) c
            warped = self.warp_blocks[i](h, encoder_hidden_states=hint, return_dict=False)[0]
            return h + self.warp_zero_convs[i](warped)

        return unet_passes.decode(self.unet, h, skips, emb, context, before_output_block=warp)


class StableVITON(UNetAdapter):
    cfg_order = "uncond_cond"
    ignorable_keys = SCHEDULE_BUFFER_KEYS + ("logvar", POSITION_IDS)

    def __init__(self, size: str = "full", device="cpu", guidance: float = 1.0,
                 image_size=(512, 384), num_steps: int = 50, components: dict | None = None,
                 reference_resize: str = "tensor_bilinear", mask_resize: str = "bilinear",
                 latent_encoding: str = "mode", encoding_seed: int = 0):
        super().__init__(size, guidance, image_size, start_code="q_sample", num_steps=num_steps,
                         latent_encoding=latent_encoding, encoding_seed=encoding_seed)
        device = torch.device(device)
        components = components or {}
        self.reference_resize, self.mask_resize = reference_resize, mask_resize   # ddpm.py get_input: resize()
        proj = resolve_component("clip_vision", size, components.get("clip_vision"))["proj_size"]
        with on_device(device):
            self.denoiser = WarpedUNet(size, in_channels=13, cross_attention_dim=proj,
                                       unet_overrides=components.get("unet"), warp=components.get("warp"))
            self.vae = build_vae(size, components.get("vae"))
            self.image_encoder = build_pbe_image_encoder(size, components.get("clip_vision"))
            self.lastzc = nn.Conv2d(4, 4, 1)   # saved in VITONHD.ckpt ("deprecated" upstream), unused at inference
        if device.type != "meta":
            self.to(device)
        self.eval()

    @property
    def unet(self):
        return self.denoiser.unet

    @property
    def step_module(self) -> nn.Module:
        return self.denoiser

    # ---- attribution layers ----------------------------------------------------------------------------------
    def attribution_layers(self) -> list[LayerSpec]:
        """The UNet's cross-attention layers (one CLIP token, R2G) and the 9 warp blocks (spatial keys: G2R, SRAM),
        in forward order: each warp block runs right before its decoder output block."""
        warps = [LayerSpec(name=f"warp_blocks.{i}.transformer_blocks.0.attn2",
                           module=block.transformer_blocks[0].attn2, ref_grid="query", group="warp")
                 for i, block in enumerate(self.denoiser.warp_blocks)]
        first, per_level = self.denoiser.first_warped_block, self.unet.config.layers_per_block + 1
        return sorted(super().attribution_layers() + warps, key=lambda s: _forward_position(s.name, first, per_level))

    def default_sram_layers(self) -> tuple[str, ...]:
        """The paper's SRAM layer of StableVITON: warp block 4 of 9 (the official G2R ULAM / HLAM layer); tiny
        presets with fewer warp blocks take their middle one."""
        if len(self.denoiser.warp_blocks) > SRAM_WARP_BLOCK:
            return (f"warp_blocks.{SRAM_WARP_BLOCK}.transformer_blocks.0.attn2",)
        return super().default_sram_layers()

    def layer_level(self, name: str) -> int:
        match = re.match(r"warp_blocks\.(\d+)\.", name)
        if match is None:
            return super().layer_level(name)
        output_block = int(match.group(1)) + self.denoiser.first_warped_block
        return NUM_LEVELS - 1 - output_block // (self.unet.config.layers_per_block + 1)

    # ---- denoising -------------------------------------------------------------------------------------------
    def reference_tokens(self, reference: torch.Tensor) -> torch.Tensor:
        pixels = clip_pixels(reference.to(self.device, self.dtype), self.image_encoder.config.image_size,
                             self.reference_resize)
        return self.image_encoder(pixels)

    def prepare(self, batch: dict) -> DenoiseInputs:
        keep = 1.0 - batch[schema.INPAINT_MASK].to(self.device, self.dtype)      # StableVITON: agn_mask 1 = keep
        ids = sample_ids(batch)
        agnostic = self.encode_images(batch[schema.AGNOSTIC], ids, "agnostic")
        densepose = self.encode_images(batch[schema.DENSEPOSE], ids, "densepose")
        garment = self.encode_images(batch[schema.REFERENCE], ids, "reference")
        h, w = agnostic.shape[-2:]
        context = self.reference_tokens(batch[schema.REFERENCE])
        uncond = self.image_encoder.uncond_vector.to(context.dtype).expand(context.shape[0], -1, -1)
        mask = resize_mask(keep, (h, w), self.mask_resize)
        return DenoiseInputs(concat=torch.cat([agnostic, mask, densepose], dim=1),
                             context=context, uncond_context=uncond, latent_shape=(4, h, w),
                             sample_ids=ids, extra={"garment_latent": garment},
                             start_image=batch[schema.IMAGE].to(self.device, self.dtype))

    def predict_eps(self, x, t, concat, context, extra) -> torch.Tensor:
        return self.denoiser(torch.cat([x, concat], dim=1), t, context, extra["garment_latent"])

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def original_rules(self) -> list[Rule]:
        keys = list(self.state_dict())
        unet_src = "model.diffusion_model."
        return (ldm_unet_rules(unet_src, "denoiser.unet.")
                + renamed(keys, "denoiser.warp_blocks.", unet_src + "warp_flow_blks.")
                + renamed(keys, "denoiser.warp_zero_convs.", unet_src + "warp_zero_convs.")
                + ldm_unet_rules("control_model.", "denoiser.spatial_encoder.",
                                 only={"time_embed", "input_blocks", "middle_block"})
                + renamed(keys, "denoiser.spatial_encoder.cond_conv_in.", "control_model.cond_first_block.0.")
                + ldm_vae_rules("first_stage_model.", "vae.")
                + clip_image_encoder_rules(keys, len(self.image_encoder.mapper.blocks))
                + renamed(keys, "lastzc.", "lastzc."))

    def original_extras(self) -> dict[str, torch.Tensor]:
        return {**ldm_schedule_buffers(), "logvar": torch.zeros(1000)}


def _forward_position(name: str, first_warped_block: int = FIRST_WARPED_BLOCK, per_level: int = 3) -> tuple:
    """Forward order of UNet layers and warp blocks: down, mid, then per decoder output block warp before UNet."""
    if name.startswith("warp_blocks."):
        return (2, int(name.split(".")[1]) + first_warped_block, 0)
    if "down_blocks" in name:
        return (0,)
    if "mid_block" in name:
        return (1,)
    block, attn = map(int, re.search(r"up_blocks\.(\d+)\.attentions\.(\d+)", name).groups())
    return (2, per_level * block + attn, 1)


register_sizes("stableviton", StableVITON)
