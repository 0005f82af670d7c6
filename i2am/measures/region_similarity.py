"""Similarity of two maps within a region only (randomisation's within-region figures): what lies outside the region
cannot change the numbers.

Each map's cells outside the region (thresholded at half coverage on the map's grid) are set to its minimum inside,
so that resizing to ``size`` (bilinear, as the whole-grid comparison does) cannot carry outside values in; then, at
``size``, each map is min-max normalised over the region's cells alone and set to 0 outside, and both are cropped to
the region's bounding box. Spearman (with and without absolute values) ranks the region's
cells only; SSIM and HOG compare the crops, where outside cells are 0 in both maps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from i2am.measures.curves import map_hog, map_ssim, spearman

MIN_CROP = 8   # cells: HOG takes 2x2 blocks of cells of at least 2 pixels; SSIM a window of at least 3


def region_cells(region: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[..., H, W] mask (any size) -> [h, w] bool: the cells of ``grid`` at least half inside the region."""
    mask = region.float().reshape(1, 1, *region.shape[-2:])
    return F.interpolate(mask, size=tuple(grid), mode="area")[0, 0] >= 0.5


def _resized(m: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    m = m.float()
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0] if size else m


def masked_crop(m: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """``m`` min-max normalised over the ``inside`` cells, 0 outside, cropped to their bounding box."""
    values = m[inside]
    low, span = values.min(), values.max() - values.min()
    scaled = torch.where(inside, (m - low) / span if span > 0 else torch.zeros_like(m), torch.zeros_like(m))
    rows, cols = inside.any(dim=1).nonzero()[:, 0], inside.any(dim=0).nonzero()[:, 0]
    return scaled[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def region_similarity(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor,
                      size: tuple[int, int] | None = None) -> dict[str, float]:
    """``spearman``, ``spearman_abs``, ``ssim``, ``hog`` of two [h, w] maps inside ``region`` (a mask of any size);
    NaN when the region holds fewer than 2 cells at the compared size (SSIM and HOG: when its bounding box is
    narrower than ``MIN_CROP`` cells, too small for their windows)."""
    on_grid = region_cells(region, tuple(a.shape[-2:]))
    if not bool(on_grid.any()):
        return dict.fromkeys(("spearman", "spearman_abs", "ssim", "hog"), math.nan)
    a, b = (_resized(torch.where(on_grid, m.float(), m.float()[on_grid].min()), size) for m in (a, b))
    inside = region_cells(region, tuple(a.shape))
    if int(inside.sum()) < 2:
        return dict.fromkeys(("spearman", "spearman_abs", "ssim", "hog"), math.nan)
    out = {"spearman": spearman(a[inside], b[inside]), "spearman_abs": spearman(a[inside].abs(), b[inside].abs())}
    crop_a, crop_b = masked_crop(a, inside), masked_crop(b, inside)
    big_enough = min(crop_a.shape) >= MIN_CROP
    out["ssim"] = map_ssim(crop_a, crop_b) if big_enough else math.nan
    out["hog"] = map_hog(crop_a, crop_b) if big_enough else math.nan
    return out
