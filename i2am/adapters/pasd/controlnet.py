"""PASD's ControlNet branch: the diffusers ControlNet with PASD's degradation-removal conditioning embedding.

The embedding is the diffusers ``ControlNetConditioningEmbedding`` (conv_in 3->16, three conv + stride-2 conv stages
16->32->96->256, zero conv_out to 320) plus ``to_rgbs``: after each stride-2 stage a 3x3 conv to RGB (at 1/2, 1/4
and 1/8 of the input). PASD trains those RGB outputs with an L1 loss against the downsampled ground truth; inference
discards them, so the ControlNet forward is the diffusers one and ``rgb_outputs`` recomputes them on demand.
The ``pasd_rrdb`` variant (``use_rrdb``) adds two RRDB blocks after ``conv_in``.
"""
from __future__ import annotations

import inspect

import torch
from diffusers import ControlNetModel
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn
from torch.nn import functional as F

from i2am.adapters.pasd.rrdb import RRDB

RRDB_BLOCKS = 2


class DegradationRemovalEmbedding(ControlNetConditioningEmbedding):
    """The conditioning embedding with PASD's multi-scale RGB side outputs (and optional RRDB front)."""

    def __init__(self, conditioning_embedding_channels: int, conditioning_channels: int = 3,
                 block_out_channels=(16, 32, 96, 256), *, return_rgbs: bool = True, use_rrdb: bool = False):
        super().__init__(conditioning_embedding_channels, conditioning_channels, tuple(block_out_channels))
        if use_rrdb:
            width = block_out_channels[0]
            self.preprocesser = nn.Sequential(*(RRDB(width, width) for _ in range(RRDB_BLOCKS)))
        else:
            self.preprocesser = None
        self.to_rgbs = nn.ModuleList(
            nn.Conv2d(channels, 3, kernel_size=3, padding=1) for channels in block_out_channels[1:]
        ) if return_rgbs else None

    def _trunk(self, conditioning: torch.Tensor, with_rgbs: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features before ``conv_out`` and, if asked, the RGB side outputs (one after each stride-2 conv)."""
        features = F.silu(self.conv_in(conditioning))
        if self.preprocesser is not None:
            features = self.preprocesser(features)
        rgbs = []
        for index, block in enumerate(self.blocks):
            features = F.silu(block(features))
            if with_rgbs and index % 2 == 1:
                rgbs.append(self.to_rgbs[index // 2](features))
        return features, rgbs

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self._trunk(conditioning, with_rgbs=False)[0])

    def rgb_outputs(self, conditioning: torch.Tensor) -> list[torch.Tensor]:
        """The three RGB predictions at 1/2, 1/4 and 1/8 of the input (PASD's degradation-removal L1 targets)."""
        if self.to_rgbs is None:
            raise ValueError("DegradationRemovalEmbedding was built with return_rgbs=False: it has no to_rgbs")
        return self._trunk(conditioning, with_rgbs=True)[1]


def _signature_with(init, **extra_keyword_defaults) -> inspect.Signature:
    """``init``'s signature plus keyword-only parameters, so diffusers' ``from_config`` passes them through."""
    signature = inspect.signature(init)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
               for name, default in extra_keyword_defaults.items()]
    return signature.replace(parameters=params)


class PixelAwareControlNetModel(ControlNetModel):
    """``ControlNetModel`` whose ``controlnet_cond_embedding`` is PASD's ``DegradationRemovalEmbedding``.

    Extra config keys, as in PASD's ``controlnet/config.json``: ``return_rgbs`` (default True: the ``to_rgbs`` convs
    exist) and ``use_rrdb`` (default False; True is the ``pasd_rrdb`` variant).
    """

    def __init__(self, *args, return_rgbs: bool = True, use_rrdb: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_to_config(return_rgbs=return_rgbs, use_rrdb=use_rrdb)
        self.controlnet_cond_embedding = DegradationRemovalEmbedding(
            conditioning_embedding_channels=self.config.block_out_channels[0],
            conditioning_channels=self.config.conditioning_channels,
            block_out_channels=self.config.conditioning_embedding_out_channels,
            return_rgbs=return_rgbs, use_rrdb=use_rrdb)

    __init__.__signature__ = _signature_with(ControlNetModel.__init__, return_rgbs=True, use_rrdb=False)

    def rgb_outputs(self, controlnet_cond: torch.Tensor) -> list[torch.Tensor]:
        """RGB side outputs of the degradation-removal module for an LR image in [0, 1] (training's L1 targets)."""
        return self.controlnet_cond_embedding.rgb_outputs(controlnet_cond)

