"""Residual-in-residual dense blocks (ESRGAN, Wang et al. 2018), the optional front of PASD's degradation removal.

The ``pasd_rrdb`` release puts two of them, at 16 channels and full resolution, after the first conv of the
conditioning embedding. Names follow BasicSR (``rdb1..3``, ``conv1..5``) so the release's keys load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

RESIDUAL_SCALE = 0.2


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the input and every earlier output; residual scaled by 0.2."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        for i in range(1, 5):
            self.add_module(f"conv{i}", nn.Conv2d(channels + (i - 1) * growth, growth, 3, padding=1))
        self.conv5 = nn.Conv2d(channels + 4 * growth, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), 0.2))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Three residual dense blocks in a residual connection scaled by 0.2."""

    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))
