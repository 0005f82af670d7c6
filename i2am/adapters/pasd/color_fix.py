"""Wavelet colour fix (from StableSR, used by PASD after decoding): the output's high frequencies on the LR's low ones.

An image splits into ``levels`` high-frequency bands plus a low-frequency residual by repeated à-trous blurs with a
3x3 binomial kernel dilated 1, 2, 4, ...; the result is the generated image's bands plus the LR image's residual,
so colours and large-scale tones follow the LR input while the generated detail is kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_BINOMIAL = torch.tensor([1.0, 2.0, 1.0]) / 4.0


def wavelet_blur(image: torch.Tensor, dilation: int) -> torch.Tensor:
    """[B, C, H, W] blurred per channel by the dilated 3x3 binomial kernel, with replicated borders."""
    channels = image.shape[1]
    kernel = torch.outer(_BINOMIAL, _BINOMIAL).to(image).expand(channels, 1, 3, 3)
    padded = F.pad(image, (dilation,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=channels, dilation=dilation)


def wavelet_split(image: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the ``levels`` high-frequency bands, low-frequency residual); they add up to ``image``."""
    low = image
    for level in range(levels):
        low = wavelet_blur(low, 2 ** level)
    return image - low, low


def wavelet_color_fix(generated: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of ``generated`` plus low frequencies of ``reference`` (same shape and value range)."""
    return wavelet_split(generated, levels)[0] + wavelet_split(reference, levels)[1]
