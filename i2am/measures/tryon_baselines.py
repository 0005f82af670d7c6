"""Reference points for paired try-on quality: what a generator that knows nothing but the garment's mean colour
would score (docs/toy_world.md), and the per-sample SSIM both are measured with."""
from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from i2am.measures.quality import repaint


def mean_colour_fill(person: torch.Tensor, reference: torch.Tensor, reference_mask: torch.Tensor,
                     inpaint_mask: torch.Tensor) -> torch.Tensor:
    """The person image with its try-on region (inpaint_mask = 1) filled with the garment's mean colour (the mean of
    ``reference`` over ``reference_mask``). Images [B, 3, H, W], masks [B, 1, H, W]."""
    weights = reference_mask.to(reference.dtype)
    mean = (reference * weights).sum(dim=(2, 3), keepdim=True) / weights.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    return repaint(mean.expand_as(person), person, inpaint_mask)


def paired_ssim(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """SSIM of each image to its target, [B] (torchmetrics' Gaussian SSIM on [0, 1]; inputs in [-1, 1])."""
    unit = lambda x: ((x.float() + 1) / 2).clamp(0, 1)
    return structural_similarity_index_measure(unit(images), unit(targets), data_range=1.0, reduction="none")
