"""The base of the UNet families (PBE, DCI-VTON, StableVITON, the custom model, PASD, diffusers UNet pipelines):
a diffusers-style UNet as the step module, its cross-attention layers found by path, SD-1.x latent scaling, one
CFG-batched UNet call per step."""
from __future__ import annotations

import re

import torch
from torch import nn

from i2am.adapters._anatomy import denoiser_stages
from i2am.adapters._base import DenoiseInputs, DiffusionAdapter
from i2am.engine.cfg_rows import split_cfg, uses_cfg
from i2am.engine.layers import LayerSpec, discover_cross_attention

NUM_LEVELS = 4  # SD-1.x UNet: latent, 1/2, 1/4, 1/8


def query_grid(latent_hw: tuple[int, int], level: int) -> tuple[int, int]:
    """Grid of a UNet level: each stride-2 conv (kernel 3, padding 1) maps a size n to ceil(n / 2)."""
    h, w = latent_hw
    for _ in range(level):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def forward_rank(name: str) -> int:
    """Stable sort key putting diffusers UNet modules in forward order (modules register up blocks before mid)."""
    return 0 if "down_blocks" in name else 1 if "mid_block" in name else 2


def unet_level(name: str, num_levels: int = NUM_LEVELS) -> int:
    """Resolution level of a diffusers UNet module path (0 = latent grid) in a UNet of ``num_levels`` levels."""
    if "mid_block" in name:
        return num_levels - 1
    match = re.search(r"(down|up)_blocks\.(\d+)", name)
    if match is None:
        raise ValueError(f"cannot tell the resolution level of {name!r}")
    block = int(match.group(2))
    return block if match.group(1) == "down" else num_levels - 1 - block


class UNetAdapter(DiffusionAdapter):
    """An adapter whose step module holds a diffusers-style UNet (``self.unet``, ``self.vae``)."""

    latent_scale = 0.18215

    @property
    def step_module(self) -> nn.Module:
        return self.unet

    def reference_grid(self):
        """``LayerSpec.ref_grid`` of the UNet cross-attention layers (None = one token)."""
        return

    def attribution_layers(self) -> list[LayerSpec]:
        """Every hookable cross-attention layer, in forward order, named by its path in ``step_module``."""
        prefix = self._unet_path()
        specs = sorted(discover_cross_attention(self.unet), key=lambda s: forward_rank(s.name))
        return [LayerSpec(name=prefix + s.name, module=s.module, ref_grid=self.reference_grid(), group="unet",
                          mid=s.mid) for s in specs]

    def _unet_path(self) -> str:
        for name, module in self.step_module.named_modules():
            if module is self.unet:
                return f"{name}." if name else ""
        raise RuntimeError("the UNet is not inside step_module")

    def layer_level(self, name: str) -> int:
        """Resolution level (0 = latent grid, k = 1/2**k) of a layer named in ``attribution_layers``."""
        return unet_level(name, len(self.unet.config.block_out_channels))

    def expected_query_grids(self, latent_hw: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """Query grid of every hookable layer, computed from the architecture (works on ``meta``)."""
        latent_hw = latent_hw or self.latent_size
        return {s.name: query_grid(latent_hw, self.layer_level(s.name)) for s in self.attribution_layers()}

    @property
    def latent_size(self) -> tuple[int, int]:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return self.image_size[0] // factor, self.image_size[1] // factor

    def randomization_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The UNet's stages, output side first (``denoiser_stages``)."""
        return denoiser_stages(self.step_module, self.unet)

    # ---- denoising -------------------------------------------------------------------------------------------
    def predict_eps(self, x: torch.Tensor, t, concat, context, extra: dict) -> torch.Tensor:
        """One call of ``step_module`` on an already CFG-batched input."""
        sample = x if concat is None else torch.cat([x, concat], dim=1)
        return self.unet(sample, t, encoder_hidden_states=context).sample

    def denoise(self, x_t: torch.Tensor, t, inputs: DenoiseInputs, guidance: float | None = None) -> torch.Tensor:
        """eps for ``x_t`` at ``t``: one UNet call; with CFG the batch is [uncond, cond] or [cond, uncond]."""
        guidance = self.guidance if guidance is None else guidance
        if not uses_cfg(guidance):
            return self.predict_eps(x_t, t, inputs.concat, inputs.context, inputs.extra)

        def twice(v):
            return None if v is None else torch.cat([v, v])

        cond_first = self.cfg_order == "cond_uncond"
        pair = (inputs.context, inputs.uncond_context) if cond_first else (inputs.uncond_context, inputs.context)
        eps = self.predict_eps(twice(x_t), t, twice(inputs.concat), torch.cat(pair),
                               {k: twice(v) for k, v in inputs.extra.items()})
        eps_cond, eps_uncond = split_cfg(eps, self.cfg_order)
        return eps_uncond + guidance * (eps_cond - eps_uncond)
