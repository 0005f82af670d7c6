"""Small adapters for the faithfulness tests: a model whose answer is known, and a bare diffusers UNet.

``RoutingModel``: one diffusers cross-attention layer in which query cell j reads exactly one reference token,
``route[j]``, and the noise prediction is that token's content. Only the tokens in ``route`` matter; with
``ignore_reference`` the value projection is zero, so the output does not depend on the reference at all.
"""
from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from torch import nn

from i2am.adapters._base import DenoiseInputs
from i2am.adapters._unet_base import UNetAdapter

GRID = (4, 4)
CELLS = GRID[0] * GRID[1]
CONTENT = 4
SHARPNESS = 12.0


class _Router(nn.Module):
    def __init__(self, route: list[int], ignore_reference: bool):
        super().__init__()
        width = CELLS + CONTENT
        self.attn = Attention(query_dim=CELLS, cross_attention_dim=width, heads=1, dim_head=CELLS, out_bias=True)
        with torch.no_grad():
            self.attn.to_q.weight.zero_()
            for j, i in enumerate(route):
                self.attn.to_q.weight[i, j] = SHARPNESS
            self.attn.to_k.weight.zero_()
            self.attn.to_k.weight[:, :CELLS] = torch.eye(CELLS) * SHARPNESS
            self.attn.to_v.weight.zero_()
            if not ignore_reference:
                self.attn.to_v.weight[:CONTENT, CELLS:] = torch.eye(CONTENT)
            self.attn.to_out[0].weight.copy_(torch.eye(CELLS))
            self.attn.to_out[0].bias.fill_(0.1)
        self.register_buffer("positions", torch.eye(CELLS)[None])

    def forward(self, sample, t, encoder_hidden_states):
        out = self.attn(self.positions.expand(sample.shape[0], -1, -1), encoder_hidden_states)
        return out[..., :CONTENT].transpose(1, 2).reshape(sample.shape[0], CONTENT, *GRID)


class _Identity(nn.Module):
    pass


class TestAdapter(UNetAdapter):
    """Shared plumbing: the context comes from ``sample["tokens"]``, decoding keeps 3 latent channels."""

    cfg_order = "uncond_cond"

    def __init__(self, unet: nn.Module, ref_grid, latent_shape, guidance: float = 1.0, num_steps: int = 4):
        super().__init__("tiny", guidance, (latent_shape[1], latent_shape[2]), num_steps=num_steps)
        self.unet, self._ref_grid, self._latent_shape = unet, ref_grid, tuple(latent_shape)
        self.vae = _Identity()
        self.name = type(unet).__name__

    def reference_grid(self):
        return self._ref_grid

    def prepare(self, batch):
        context = batch["tokens"].to(self.device)
        return DenoiseInputs(concat=None, context=context, uncond_context=torch.zeros_like(context),
                             latent_shape=self._latent_shape, sample_ids=[str(s) for s in batch["sample_id"]])

    def decode_latents(self, latents):
        return torch.tanh(latents[:, :3])


class RoutingAdapter(TestAdapter):
    def __init__(self, route: list[int], ignore_reference: bool = False, num_steps: int = 4):
        super().__init__(_Router(route, ignore_reference), GRID, (CONTENT, *GRID), num_steps=num_steps)

    def predict_eps(self, x, t, concat, context, extra):
        return self.unet(x, t, context)

    def attribution_layers(self):
        from i2am.engine import LayerSpec
        return [LayerSpec(name="attn", module=self.unet.attn, ref_grid=GRID, query_grid=GRID)]


def routing_sample(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.cat([torch.eye(CELLS), torch.randn(CELLS, CONTENT, generator=g) * 2], dim=1)[None]
    return {"tokens": tokens, "sample_id": [f"route{seed}"]}


def bare_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8).eval()
    for p in unet.parameters():   # sharper attention than the default init
        if p.dim() == 2:
            p.data.mul_(4)
    return unet


class BareUNetAdapter(TestAdapter):
    """A bare diffusers UNet given ``ref_grid``: the context is 8x6 spatial reference tokens."""

    REF_GRID = (8, 6)

    def __init__(self, num_steps: int = 3):
        super().__init__(bare_unet(), self.REF_GRID, (4, 8, 8), num_steps=num_steps)


def bare_sample(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    rows, cols = BareUNetAdapter.REF_GRID
    return {"tokens": torch.randn(1, rows * cols, 16, generator=g), "sample_id": [f"bare{seed}"]}
