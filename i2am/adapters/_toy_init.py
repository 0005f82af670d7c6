"""Deterministic weights for the frozen parts of the ``*-tiny`` presets, so that toy models see their inputs.

Real try-on models freeze a *trained* VAE (its latents keep the image) and a *trained* DINOv2 (its patch tokens know
their grid cell). Random weights have neither property: the latents of a random tiny VAE keep nothing of the
DensePose-like input (measured: R² <= 0.1 of its UV coordinates from a quadratic probe of the latents), so no amount
of training lets a toy model read the garment coordinates of a body pixel. The tiny presets therefore build the same
diffusers / transformers modules with fixed weights instead:

- ``block_average_autoencoder_``: an ``AutoencoderKL`` that is exactly linear: the latent of an 8x8 pixel block is
  its mean RGB (channels 0-2, channel 3 is zero) over the latent scale, and decoding repeats each latent's colour over
  its block. Every ResNet and attention branch is zeroed (the blocks become their shortcuts); the GroupNorm + SiLU
  before each ``conv_out`` is passed exactly by carrying each signal s as the pair (s, -s), whose SiLUs differ by s,
  next to a constant pair (K, -K) in the same norm group, which fixes the group's mean at 0 and its standard deviation
  at ~K (relative error < 1e-5 for |s| <= 1).
- ``fourier_position_embeddings_``: DINOv2's position embeddings become fixed 2D sin/cos features of each patch's
  cell, large enough to survive the random transformer layers, so the garment tokens carry their position.
"""
from __future__ import annotations

import math

import torch
from torch import nn

SIGNALS = 3             # RGB; latent channel 3 stays zero
CONSTANT = 256.0        # K: the constant pair that pins each norm group's statistics
GROUP = 4               # channels per signal in the layout: (s, -s, K, -K)


def block_average_autoencoder_(vae) -> None:
    """Turn a diffusers ``AutoencoderKL`` (4 latent channels, factor 8, groups of 4 channels before ``conv_out``)
    into the exact block-average autoencoder described above, in place."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

    widths = vae.config.block_out_channels
    if min(widths) < SIGNALS * GROUP or vae.config.latent_channels < SIGNALS:
        raise ValueError(f"block_average_autoencoder_: needs widths >= {SIGNALS * GROUP} and >= {SIGNALS} latent "
                         f"channels, got {widths} and {vae.config.latent_channels}")
    for norm in (vae.encoder.conv_norm_out, vae.decoder.conv_norm_out):
        per_group = norm.num_channels // norm.num_groups
        if per_group != GROUP and per_group < SIGNALS * GROUP:
            raise ValueError(f"block_average_autoencoder_: {norm} must group {GROUP} or >= {SIGNALS * GROUP} "
                             "channels (set norm_num_groups so)")
    scale = float(vae.config.scaling_factor)
    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, ResnetBlock2D):
                _zero(module.conv2)
                if module.conv_shortcut is not None:
                    _embed_identity(module.conv_shortcut)
            elif isinstance(module, Attention):
                _zero(module.to_out[0])
            elif isinstance(module, Downsample2D):   # pad (0, 1, 0, 1), 3x3 stride 2: taps (0..1, 0..1) = 2x2 mean
                _zero(module.conv)
                eye = torch.eye(module.conv.out_channels, module.conv.in_channels)
                module.conv.weight[:, :, :2, :2] = eye[:, :, None, None] / 4
            elif isinstance(module, Upsample2D):     # nearest x2, then a 3x3 conv: the centre tap
                _centre_identity(module.conv)
        _set_norm(vae.encoder.conv_norm_out)
        _set_norm(vae.decoder.conv_norm_out)
        _spread(vae.encoder.conv_in, gain=1.0)
        _collect(vae.encoder.conv_out, _group_std(vae.encoder.conv_norm_out) / scale)
        _zero(vae.quant_conv)
        latent = vae.config.latent_channels
        vae.quant_conv.weight[:latent, :latent, 0, 0] = torch.eye(latent)
        vae.quant_conv.bias[latent:] = -20.0     # posterior log-variance: a near-deterministic posterior
        _zero(vae.post_quant_conv)
        vae.post_quant_conv.weight[:, :, 0, 0] = torch.eye(latent)
        _spread(vae.decoder.conv_in, gain=scale)
        _collect(vae.decoder.conv_out, _group_std(vae.decoder.conv_norm_out))


def _zero(layer: nn.Module) -> None:
    layer.weight.zero_()
    if layer.bias is not None:
        layer.bias.zero_()


def _embed_identity(conv: nn.Conv2d) -> None:
    _zero(conv)
    conv.weight[:, :, 0, 0] = torch.eye(conv.out_channels, conv.in_channels)


def _centre_identity(conv: nn.Conv2d) -> None:
    _zero(conv)
    conv.weight[:, :, 1, 1] = torch.eye(conv.out_channels, conv.in_channels)


def _spread(conv: nn.Conv2d, gain: float) -> None:
    """Input channel c -> the layout (gain*x_c, -gain*x_c, K, -K) at channels 4c..4c+3 (centre tap, biases)."""
    _zero(conv)
    for c in range(SIGNALS):
        conv.weight[GROUP * c, c, 1, 1] = gain
        conv.weight[GROUP * c + 1, c, 1, 1] = -gain
        conv.bias[GROUP * c + 2] = CONSTANT
        conv.bias[GROUP * c + 3] = -CONSTANT


def _set_norm(norm: nn.GroupNorm) -> None:
    norm.weight.fill_(1.0)
    norm.bias.zero_()


def _group_std(norm: nn.GroupNorm) -> float:
    """The standard deviation GroupNorm divides by in each group holding the layout, up to the signal's share: one
    layout block per group (4 channels) or all of them in the first group (>= 12 channels)."""
    per_group = norm.num_channels // norm.num_groups
    constants = 2 * min(per_group // GROUP, SIGNALS)
    return CONSTANT * math.sqrt(constants / per_group)


def _collect(conv: nn.Conv2d, gain: float) -> None:
    """silu(s/σ) - silu(-s/σ) = s/σ: output c = gain * (that) for c < 3 (centre tap); other outputs zero."""
    _zero(conv)
    for c in range(SIGNALS):
        conv.weight[c, GROUP * c, 1, 1] = gain
        conv.weight[c, GROUP * c + 1, 1, 1] = -gain


def fourier_position_embeddings_(dinov2, amplitude: float = 1.0) -> None:
    """Set a transformers ``Dinov2Model``'s patch position embeddings to 2D sin/cos features of each cell (row and
    column in [0, 1), frequencies 1..D/4), scaled so their per-token RMS is ``amplitude`` times that of the
    patch embeddings of unit-variance pixels; the CLS embedding is left as it is."""
    embeddings = dinov2.embeddings
    table = embeddings.position_embeddings            # [1, 1 + side*side, D]
    side = math.isqrt(table.shape[1] - 1)
    dim = table.shape[-1]
    if side * side != table.shape[1] - 1 or dim % 4:
        raise ValueError(f"fourier_position_embeddings_: a square grid and D divisible by 4 are needed, got "
                         f"{tuple(table.shape)}")
    rows, cols = torch.meshgrid(torch.arange(side) / side, torch.arange(side) / side, indexing="ij")
    freqs = torch.arange(1, dim // 4 + 1, dtype=torch.float32)
    angles = [math.pi * rows.flatten()[:, None] * freqs, math.pi * cols.flatten()[:, None] * freqs]
    features = torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)], dim=-1)   # [side*side, D], RMS 1/√2
    with torch.no_grad():
        patch_size = dinov2.config.patch_size
        pixels = torch.randn(16, dinov2.config.num_channels, patch_size, patch_size,
                             generator=torch.Generator().manual_seed(0)).to(table.device, table.dtype)
        content_rms = embeddings.patch_embeddings(pixels).pow(2).mean().sqrt()
        table[0, 1:] = features * (amplitude * content_rms * math.sqrt(2))
