"""Mask conventions (docs/method.md §4.2, §5.1).

Every dataset yields ``inpaint_mask`` with 1 on the region to generate. Models disagree on the convention they are fed:
Paint-by-Example and StableVITON's loader use 1 = keep (the bbox or try-on region is 0), the custom model uses
1 = generate. Adapters convert with :func:`to_model_mask`; IMACS always takes the region as 1.
"""
from __future__ import annotations

import torch

MASK_CONVENTIONS = ("generate_is_one", "keep_is_one")


def to_model_mask(inpaint_mask: torch.Tensor, convention: str) -> torch.Tensor:
    """Convert a 1-on-the-region-to-generate mask to a model's convention ("generate_is_one" or "keep_is_one")."""
    if convention == "generate_is_one":
        return inpaint_mask
    if convention == "keep_is_one":
        return 1.0 - inpaint_mask
    raise ValueError(f"unknown mask convention {convention!r}; expected one of {MASK_CONVENTIONS}")


def from_model_mask(model_mask: torch.Tensor, convention: str) -> torch.Tensor:
    """Inverse of :func:`to_model_mask`: back to 1 = region to generate (both conventions are involutions)."""
    return to_model_mask(model_mask, convention)


def binarize(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Float {0, 1} mask from a soft mask in [0, 1] (JPEG-stored masks are never exactly binary)."""
    return (mask >= threshold).to(torch.float32)
