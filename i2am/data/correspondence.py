"""Ground-truth correspondence of the toy world: for each person pixel, the garment pixel it came from.

On disk (``correspondence/<name>.npy``): float32 [H, W, 2] = (row, col) on the cloth image's pixel grid (pixel
centres at integer coordinates), -1 in both channels where the garment does not cover the person pixel.
In a batch: float32 [2, H, W] on the grid of the batch's reference image.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_correspondence(correspondence: np.ndarray, size: tuple[int, int], reference_src: tuple[int, int],
                          reference_dst: tuple[int, int]) -> torch.Tensor:
    """[Hs, Ws, 2] (row, col) on a ``reference_src`` grid -> [2, H, W] on a ``reference_dst`` grid.

    Person pixels are resampled with nearest neighbour (a source pixel is a label, not a value to blend); the
    coordinates are mapped between grids with the pixel-centre convention (r + 0.5) * scale - 0.5.
    """
    src_h, src_w = correspondence.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * src_h / size[0]).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * src_w / size[1]).astype(np.int64), src_w - 1)
    sampled = torch.from_numpy(np.ascontiguousarray(correspondence[rows][:, cols])).permute(2, 0, 1).float()
    scale = torch.tensor([reference_dst[0] / reference_src[0], reference_dst[1] / reference_src[1]]).view(2, 1, 1)
    covered = (sampled >= 0).all(0, keepdim=True)
    return torch.where(covered, (sampled + 0.5) * scale - 0.5, torch.full_like(sampled, -1.0))


def correspondence_valid(correspondence: torch.Tensor) -> torch.Tensor:
    """[B, 2, H, W] -> float {0, 1} [B, 1, H, W]: 1 where the person pixel has a garment source."""
    return (correspondence >= 0).all(1, keepdim=True).float()


def warp_reference(reference: torch.Tensor, correspondence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull the reference onto the person grid: bilinear sample of ``reference`` [B, C, Hr, Wr] at the
    (row, col) of ``correspondence`` [B, 2, H, W]. Returns (warped [B, C, H, W], zero where uncovered; valid)."""
    height, width = reference.shape[-2:]
    rows, cols = correspondence.unbind(1)
    grid = torch.stack((cols / (width - 1) * 2 - 1, rows / (height - 1) * 2 - 1), dim=-1)
    warped = F.grid_sample(reference, grid.to(reference.dtype), mode="bilinear", padding_mode="border",
                           align_corners=True)
    valid = correspondence_valid(correspondence).to(reference.dtype)
    return warped * valid, valid
