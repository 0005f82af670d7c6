"""PASD's UNet: the diffusers SD UNet plus one pixel-aware cross-attention (PACA) transformer per decoder layer.

Each decoder layer runs resnet -> text transformer (``attentions.j``, absent in the attention-free ``UpBlock2D``) ->
PACA (``pixel_attentions.j``), a diffusers ``Transformer2DModel`` whose cross-attention ``attn2`` takes as keys and
values the ControlNet residual that feeds the same layer's skip connection, flattened b x c x h x w -> b x hw x c with
no normalisation. Queries and keys therefore lie on the same h x w grid. Without ControlNet residuals the PACA
layers are skipped, as in PASD. Module names match the release's ``unet/`` weights exactly.
"""
from __future__ import annotations

import functools

import torch
from diffusers import Transformer2DModel, UNet2DConditionModel
from torch import nn


def flatten_grid(feature_map: torch.Tensor) -> torch.Tensor:
    """b x c x h x w -> b x (h w) x c, row-major over the grid (the token order of every diffusers transformer)."""
    return feature_map.flatten(2).transpose(1, 2)


class PixelAwareUpBlock(nn.Module):
    """A diffusers up block (``CrossAttnUpBlock2D`` or ``UpBlock2D``) with a PACA transformer after each layer.

    It adopts the original block's resnets, text transformers and upsamplers, so their parameter names are unchanged.
    ``pixel_context`` holds, per layer, the ControlNet residual for the current forward call; the UNet sets it
    before and clears it after every call.
    """

    def __init__(self, block: nn.Module, pixel_attentions: list[Transformer2DModel]):
        super().__init__()
        self.resnets = block.resnets
        self.has_cross_attention = getattr(block, "has_cross_attention", False)
        if self.has_cross_attention:
            self.attentions = block.attentions
        self.pixel_attentions = nn.ModuleList(pixel_attentions)
        self.upsamplers = block.upsamplers
        self.pixel_context: list[torch.Tensor] | None = None

    def forward(self, hidden_states, res_hidden_states_tuple, temb=None, encoder_hidden_states=None,
                cross_attention_kwargs=None, upsample_size=None, attention_mask=None, encoder_attention_mask=None):
        texts = self.attentions if self.has_cross_attention else [None] * len(self.resnets)
        for j, (resnet, text_attention, pixel_attention) in enumerate(zip(self.resnets, texts, self.pixel_attentions)):
            hidden_states = torch.cat([hidden_states, res_hidden_states_tuple[-1 - j]], dim=1)
            hidden_states = resnet(hidden_states, temb)
            if text_attention is not None:
                hidden_states = text_attention(
                    hidden_states, encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs, attention_mask=attention_mask,
                    encoder_attention_mask=encoder_attention_mask, return_dict=False)[0]
            if self.pixel_context is not None:
                hidden_states = pixel_attention(
                    hidden_states, encoder_hidden_states=flatten_grid(self.pixel_context[j]),
                    cross_attention_kwargs=cross_attention_kwargs, return_dict=False)[0]
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


def _per_level(value, levels: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * levels


class PixelAwareUNet2DConditionModel(UNet2DConditionModel):
    """``UNet2DConditionModel`` with PASD's 12 PACA layers (``up_blocks.{i}.pixel_attentions.{j}``).

    Same constructor and config as the diffusers UNet (``functools.wraps`` keeps its signature, which diffusers'
    ``from_config`` reads). ``forward`` is the diffusers forward; when ControlNet residuals are passed
    (``down_block_additional_residuals`` and ``mid_block_additional_residual``) they are added to the skips as usual
    and also routed to the PACA layers.
    """

    @functools.wraps(UNet2DConditionModel.__init__)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        skip_channels = self._skip_channels()
        config = self.config
        levels = len(self.up_blocks)
        heads = list(reversed(_per_level(config.num_attention_heads or config.attention_head_dim, levels)))
        depth = list(reversed(_per_level(config.transformer_layers_per_block, levels)))
        only_cross = list(reversed(_per_level(config.only_cross_attention, levels)))
        for i, block in enumerate(self.up_blocks):
            width = block.resnets[0].out_channels
            pacas = []
            for _ in block.resnets:
                pacas.append(Transformer2DModel(
                    num_attention_heads=heads[i], attention_head_dim=width // heads[i], in_channels=width,
                    num_layers=depth[i], cross_attention_dim=skip_channels.pop(),
                    norm_num_groups=config.norm_num_groups, use_linear_projection=config.use_linear_projection,
                    only_cross_attention=only_cross[i], upcast_attention=config.upcast_attention))
            self.up_blocks[i] = PixelAwareUpBlock(block, pacas)

    def _skip_channels(self) -> list[int]:
        """Channels of the encoder's skip tensors (= ControlNet residuals), in the order the encoder emits them."""
        channels = [self.conv_in.out_channels]
        for block in self.down_blocks:
            channels += [resnet.out_channels for resnet in block.resnets]
            channels += [down.out_channels for down in (block.downsamplers or [])]
        return channels

    def paca_layer_names(self) -> list[str]:
        """Names of the 12 pixel-aware cross-attentions, in forward order."""
        return [f"up_blocks.{i}.pixel_attentions.{j}.transformer_blocks.0.attn2"
                for i, block in enumerate(self.up_blocks) for j in range(len(block.pixel_attentions))]

    def forward(self, sample, timestep, encoder_hidden_states, **kwargs):
        residuals = kwargs.get("down_block_additional_residuals")
        with_controlnet = residuals is not None and kwargs.get("mid_block_additional_residual") is not None
        self._route_pixel_context(list(residuals) if with_controlnet else None)
        try:
            return super().forward(sample, timestep, encoder_hidden_states, **kwargs)
        finally:
            self._route_pixel_context(None)

    def _route_pixel_context(self, residuals: list[torch.Tensor] | None) -> None:
        """Up block i, layer j reads the residual its skip connection pops: from the end of the list, in order."""
        expected = sum(len(block.resnets) for block in self.up_blocks)
        if residuals is not None and len(residuals) != expected:
            raise ValueError(f"PixelAwareUNet2DConditionModel: {expected} ControlNet residuals expected, "
                             f"got {len(residuals)}")
        for block in self.up_blocks:
            if residuals is None:
                block.pixel_context = None
                continue
            count = len(block.resnets)
            block.pixel_context = residuals[-count:][::-1]
            del residuals[-count:]
