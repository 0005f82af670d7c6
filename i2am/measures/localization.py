"""Localisation against the toy world's ground-truth correspondence (beyond the paper): pure functions.

Coordinates are continuous cell coordinates on a grid, cell (i, j) having its centre at (i, j). A pixel row r of an
image of height H has its centre at r + 0.5 in continuous pixel units, hence at (r + 0.5) * h / H - 0.5 on an h-row
grid. Distances are divided by the grid's diagonal sqrt(h^2 + w^2), in cells.

The SRAM of a generated cell is a distribution over reference cells. Its location is read two ways: the argmax
(ties averaged, so a flat map points at its centre instead of an arbitrary corner) and the centroid. The entropy (nats)
and the maximum probability go next to every figure: a collapse onto one cell has entropy ~0 and can never pass for
localisation. Baselines are maps too (seeded random maps: the chance level; the centre prior; the bounding-box mapping),
scored by the same functions.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from i2am.engine.distributions import grid_entropy as entropy_nats


def grid_cells(height: int, width: int, device=None) -> Tensor:
    """[h*w, 2] long (row, col) of every cell in row-major order, e.g. the points of ``maps.sram(layer, points=)``."""
    rows, cols = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device),
                                indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)


def grid_diagonal(grid: Sequence[int]) -> float:
    return math.hypot(grid[0], grid[1])


def normalise_distribution(maps: Tensor) -> Tensor:
    """[..., h, w] non-negative maps -> distributions summing to 1 over (h, w)."""
    maps = maps.float().clamp(min=0)
    return maps / maps.sum(dim=(-2, -1), keepdim=True).clamp(min=1e-12)


def _positions(grid: Sequence[int], like: Tensor) -> Tensor:
    return grid_cells(*grid, device=like.device).to(like.dtype)  # [h*w, 2]


def argmax_location(prob: Tensor) -> Tensor:
    """[..., h, w] -> [..., 2] cell coordinates of the maximum; tied maxima (within 1e-6 relative) are averaged."""
    flat = prob.flatten(-2)
    is_max = (flat >= flat.amax(dim=-1, keepdim=True) * (1 - 1e-6)).to(prob.dtype)
    return (is_max @ _positions(prob.shape[-2:], prob)) / is_max.sum(dim=-1, keepdim=True)


def centroid_location(prob: Tensor) -> Tensor:
    """[..., h, w] distributions -> [..., 2] expected cell coordinates."""
    return prob.flatten(-2) @ _positions(prob.shape[-2:], prob)


def localization_stats(prob: Tensor, source: Tensor, radii: Sequence[float]) -> dict[str, Tensor]:
    """Per-query figures of distributions [N, hr, wr] against true sources [N, 2] (reference cell coordinates).

    err / err_centroid: distance of the argmax / centroid to the source over the grid diagonal; hit_r{r}: argmax
    within r cells (Euclidean) of the source (pointing game); entropy (nats) and max_prob of the distribution.
    """
    diagonal = grid_diagonal(prob.shape[-2:])
    argmax_distance = (argmax_location(prob) - source).norm(dim=-1)
    stats = {"err": argmax_distance / diagonal,
             "err_centroid": (centroid_location(prob) - source).norm(dim=-1) / diagonal}
    for radius in radii:
        stats[f"hit_r{radius:g}"] = (argmax_distance <= radius).to(prob.dtype)
    stats["entropy"] = entropy_nats(prob)
    stats["max_prob"] = prob.flatten(-2).amax(dim=-1)
    return stats


def pool_to_grid(images: Tensor, grid: Sequence[int]) -> Tensor:
    """Average [B, C, H, W] over each grid cell's pixels (area pooling) -> [B, C, h, w]."""
    return F.interpolate(images.float(), size=tuple(grid), mode="area")


def true_source_cells(correspondence: Tensor, query_grid: Sequence[int], reference_grid: Sequence[int],
                      reference_size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """True source of every query cell, and how much of the cell the garment covers.

    correspondence: [B, 2, H, W] source pixel (row, col) on the reference image of size ``reference_size`` for each
        person pixel the garment covers, -1 elsewhere.
    Returns source [B, h*w, 2] in reference cell coordinates (the mean source over the cell's covered pixels; NaN
    where none is covered) and coverage [B, h*w], the covered fraction of each cell.
    """
    covered = (correspondence >= 0).all(dim=1, keepdim=True).float()
    coverage = pool_to_grid(covered, query_grid)
    mean_source = pool_to_grid(correspondence.float() * covered, query_grid) / coverage
    scale = mean_source.new_tensor([reference_grid[0] / reference_size[0], reference_grid[1] / reference_size[1]])
    source = (mean_source.flatten(-2).transpose(1, 2) + 0.5) * scale - 0.5
    return source, coverage.flatten(1)


def mask_bbox(mask: Tensor) -> Tensor:
    """[B, 1, H, W] masks -> [B, 4] continuous extents (top, left, bottom, right) in pixels (bottom/right exclusive)."""
    mask = mask[:, 0] > 0.5
    rows, cols = mask.any(dim=-1), mask.any(dim=-2)
    if not bool(rows.any(dim=-1).all()):
        raise ValueError("mask_bbox: a mask is empty, its bounding box is undefined")

    def extent(line: Tensor) -> tuple[Tensor, Tensor]:
        length = line.shape[-1]
        first = line.float().argmax(dim=-1)
        last = length - 1 - line.flip(-1).float().argmax(dim=-1)
        return first.float(), (last + 1).float()

    top, bottom = extent(rows)
    left, right = extent(cols)
    return torch.stack([top, left, bottom, right], dim=-1)


def bbox_mapping_sources(query_cells: Tensor, query_grid: Sequence[int], inpaint_mask: Tensor,
                         reference_mask: Tensor, reference_grid: Sequence[int]) -> Tensor:
    """The no-learning baseline: each query cell's centre, placed in the try-on region's bounding box, mapped linearly
    onto the garment mask's bounding box on the reference image. -> [B, P, 2] reference cell coordinates.

    query_cells: [P, 2] or [B, P, 2] (row, col) on ``query_grid``; inpaint_mask: [B, 1, H, W] person image;
    reference_mask: [B, 1, Hr, Wr] reference image.
    """
    image_size = inpaint_mask.new_tensor(inpaint_mask.shape[-2:], dtype=torch.float32)
    reference_size = inpaint_mask.new_tensor(reference_mask.shape[-2:], dtype=torch.float32)
    centres = (query_cells.float() + 0.5) * image_size / torch.tensor(query_grid, dtype=torch.float32,
                                                                       device=image_size.device)
    source_box, target_box = mask_bbox(inpaint_mask)[:, None], mask_bbox(reference_mask)[:, None]
    relative = (centres - source_box[..., :2]) / (source_box[..., 2:] - source_box[..., :2])
    mapped = target_box[..., :2] + relative * (target_box[..., 2:] - target_box[..., :2])
    return mapped * torch.tensor(reference_grid, dtype=torch.float32, device=mapped.device) / reference_size - 0.5


def point_maps(points: Tensor, grid: Sequence[int]) -> Tensor:
    """Bilinear splat of [..., 2] cell coordinates (clamped to the grid) -> [..., h, w] distributions whose centroid is
    the point and whose argmax is the nearest cell."""
    height, width = grid
    limit = points.new_tensor([height - 1, width - 1])
    points = torch.minimum(points.clamp(min=0), limit)
    low = points.floor().clamp(max=limit - 1).clamp(min=0)
    frac = points - low
    maps = points.new_zeros(*points.shape[:-1], height * width)
    for d_row in (0, 1):
        for d_col in (0, 1):
            row, col = (low[..., 0] + d_row).clamp(max=height - 1), (low[..., 1] + d_col).clamp(max=width - 1)
            weight = (frac[..., 0] if d_row else 1 - frac[..., 0]) * (frac[..., 1] if d_col else 1 - frac[..., 1])
            maps.scatter_add_(-1, (row * width + col).long()[..., None], weight[..., None])
    return maps.reshape(*points.shape[:-1], height, width)


def centre_prior_maps(count: int, grid: Sequence[int], device=None) -> Tensor:
    """The centre prior: every query's map is a point at the reference grid's centre (argmax and centroid there)."""
    centre = torch.tensor([(grid[0] - 1) / 2, (grid[1] - 1) / 2], device=device)
    return point_maps(centre.expand(count, 2), grid)


def random_maps(count: int, grid: Sequence[int], generator: torch.Generator, device=None) -> Tensor:
    """Seeded random distributions: i.i.d. uniform cell values, normalised."""
    return normalise_distribution(torch.rand(count, *grid, generator=generator)).to(device)


def mass_in_region(grid_map: Tensor, region: Tensor) -> tuple[Tensor, Tensor]:
    """Share of a non-negative [B, h, w] map's mass inside a [B, 1, H, W] region, and the region's area share (the
    value a uniform map would get). -> ([B], [B])."""
    fraction = pool_to_grid(region, grid_map.shape[-2:])[:, 0]
    mass = grid_map.float().clamp(min=0)
    share = (mass * fraction).sum(dim=(-2, -1)) / mass.sum(dim=(-2, -1)).clamp(min=1e-12)
    return share, fraction.mean(dim=(-2, -1))
