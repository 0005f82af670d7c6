"""Orders of the reference tokens computed from the inputs alone (docs/faithfulness.md, "Trivial orders").

A map earns a faithfulness claim only by beating the best of these in deletion / insertion: on a garment-on-white
reference, removing garment tokens before background tokens beats random order whatever the map says. Each returns
ranking scores [1, h, w] on the map's grid (higher = removed first in deletion); ties are broken at random by a
seeded generator, so no order inherits the raster order of the tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TRIVIAL_ORDERS = ("foreground", "centre", "blobs")
TIE_BREAK = 1e-3          # below the smallest step of an area-resized mask on a grid of up to 1000 cells


def _tie_break(grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(1, *grid, generator=generator, dtype=torch.float64) * TIE_BREAK


def foreground_order(mask: torch.Tensor, grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """The reference's foreground mask ([..., H, W], 1 on the object) area-resized to ``grid``: object tokens first,
    in random order among equals."""
    mask = mask.double().reshape(1, 1, *mask.shape[-2:])
    cells = F.interpolate(mask, size=tuple(grid), mode="area")[0]
    return cells + _tie_break(grid, generator)


def centre_prior(grid: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Tokens nearest the centre of the reference first (an object-centred photo's prior)."""
    ys = (torch.arange(grid[0], dtype=torch.float64) + 0.5) / grid[0] - 0.5
    xs = (torch.arange(grid[1], dtype=torch.float64) + 0.5) / grid[1] - 0.5
    dist = ys[:, None].pow(2) + xs[None, :].pow(2)
    return -dist[None] + _tie_break(grid, generator)


def blob_order(grid: tuple[int, int], generator: torch.Generator, sigma_cells: float = 1.5) -> torch.Tensor:
    """Smoothed random noise: spatially coherent random blobs (a random order with the map's smoothness)."""
    noise = torch.randn(1, 1, *grid, generator=generator, dtype=torch.float64)
    radius = max(1, round(3 * sigma_cells))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-x.pow(2) / (2 * sigma_cells ** 2))
    kernel = kernel / kernel.sum()
    smooth = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    smooth = F.conv2d(F.pad(smooth, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return smooth[0]


def trivial_orders(grid: tuple[int, int], generator: torch.Generator, foreground: torch.Tensor | None = None,
                   names=TRIVIAL_ORDERS) -> dict[str, torch.Tensor]:
    """The trivial orders named in ``names`` ([1, h, w] each); ``foreground`` is skipped without a mask."""
    unknown = [n for n in names if n not in TRIVIAL_ORDERS]
    if unknown:
        raise ValueError(f"faithfulness trivial orders {unknown}: choose from {list(TRIVIAL_ORDERS)}")
    out = {}
    for name in names:
        if name == "foreground":
            if foreground is not None:
                out[name] = foreground_order(foreground, grid, generator)
        elif name == "centre":
            out[name] = centre_prior(grid, generator)
        else:
            out[name] = blob_order(grid, generator)
    return out
