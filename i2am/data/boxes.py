"""Bounding-box helpers shared by the detection-style datasets (COCO xywh in pixels)."""
from __future__ import annotations

import math

import numpy as np
import torch


def pixel_box(bbox_xywh, height: int, width: int) -> tuple[int, int, int, int]:
    """The integer pixel rectangle (x0, y0, x1, y1), end-exclusive, that covers a float xywh box, clipped.

    Edges are rounded to 1e-4 px first, so float32 noise (12.8 + 51.2 = 64.000001) does not add a pixel.
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    x0, y0 = max(0, math.floor(round(x, 4))), max(0, math.floor(round(y, 4)))
    x1, y1 = min(width, math.ceil(round(x + w, 4))), min(height, math.ceil(round(y + h, 4)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def box_mask(bbox_xywh, height: int, width: int) -> np.ndarray:
    """uint8 [H, W]: 255 on the filled pixel box, 0 elsewhere."""
    x0, y0, x1, y1 = pixel_box(bbox_xywh, height, width)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def rescale_xywh(bbox_xywh, source: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Float [4] xywh from a ``source`` (H, W) image to a ``target`` (H, W) image."""
    sy, sx = target[0] / source[0], target[1] / source[1]
    x, y, w, h = (float(v) for v in bbox_xywh)
    return torch.tensor([x * sx, y * sy, w * sx, h * sy], dtype=torch.float32)


def mask_to_xywh(mask: torch.Tensor) -> torch.Tensor:
    """Float [4] xywh of the pixels where a [1, H, W] mask is 1 (zeros for an empty mask)."""
    rows = torch.nonzero(mask[0].any(1)).flatten()
    cols = torch.nonzero(mask[0].any(0)).flatten()
    if rows.numel() == 0:
        return torch.zeros(4)
    return torch.tensor([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], dtype=torch.float32)
