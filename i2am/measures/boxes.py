"""Boxes for the detection experiment (docs/method.md §5.1): from an attribution map, baselines, IoU (COCO xywh).

``box_from_map`` follows PBE-OD ``scripts/cal_bbox_region_rect.py`` but reads the raw float map at image resolution
instead of a jet PNG decoded by nearest colour (docs/method.md §8 item 7).
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor


def whole_image_box(height: int, width: int) -> tuple[int, int, int, int]:
    return (0, 0, width, height)


def foreground_mask(attribution: np.ndarray, percentile: float = 65.0, kernel_size: int = 5,
                    dilate_iterations: int = 1) -> np.ndarray:
    """uint8 {0, 255}: pixels strictly above the percentile, opened then closed with a square kernel, then dilated."""
    threshold = np.percentile(attribution, percentile)
    mask = (attribution > threshold).astype(np.uint8) * 255
    kernel = np.ones((kernel_size, kernel_size), np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    if dilate_iterations:
        mask = cv2.dilate(mask, kernel, iterations=dilate_iterations)
    return mask


def box_from_map(attribution: Tensor | np.ndarray, percentile: float = 65.0, kernel_size: int = 5,
                 dilate_iterations: int = 1) -> tuple[int, int, int, int]:
    """The detection box of one [H, W] attribution map (high = attributed), COCO xywh in pixels.

    Among the contours of the foreground (RETR_TREE, CHAIN_APPROX_NONE), keep the one whose bounding rectangle holds
    the most foreground pixels (the first on ties, as the official loop) and return that rectangle. A map with no
    foreground (e.g. a constant map, whose 65th percentile equals its maximum) gives the whole image: an uninformative
    map points everywhere. The official script skipped such samples instead.
    """
    if isinstance(attribution, Tensor):
        attribution = attribution.detach().float().cpu().numpy()
    if attribution.ndim != 2:
        raise ValueError(f"box_from_map expects one [H, W] map, got shape {attribution.shape}")
    mask = foreground_mask(attribution, percentile, kernel_size, dilate_iterations)
    contours, _ = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    best, best_overlap = None, 0
    for contour in contours:  # a handful of contours per map
        x, y, w, h = cv2.boundingRect(contour)
        overlap = int(np.count_nonzero(mask[y:y + h, x:x + w] == 255))
        if overlap > best_overlap:
            best, best_overlap = (x, y, w, h), overlap
    return best if best is not None else whole_image_box(*attribution.shape)


def boxes_from_maps(attribution: Tensor, **kwargs) -> Tensor:
    """[B, H, W] maps -> [B, 4] float boxes (xywh)."""
    return torch.tensor([box_from_map(m, **kwargs) for m in attribution.detach().float().cpu()],
                        dtype=torch.float32).reshape(-1, 4)


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Elementwise IoU of [..., 4] xywh boxes (continuous extents x..x+w), as the official ``iou``."""
    a_x2, a_y2 = boxes_a[..., 0] + boxes_a[..., 2], boxes_a[..., 1] + boxes_a[..., 3]
    b_x2, b_y2 = boxes_b[..., 0] + boxes_b[..., 2], boxes_b[..., 1] + boxes_b[..., 3]
    inter_w = (torch.minimum(a_x2, b_x2) - torch.maximum(boxes_a[..., 0], boxes_b[..., 0])).clamp(min=0)
    inter_h = (torch.minimum(a_y2, b_y2) - torch.maximum(boxes_a[..., 1], boxes_b[..., 1])).clamp(min=0)
    inter = inter_w * inter_h
    union = boxes_a[..., 2] * boxes_a[..., 3] + boxes_b[..., 2] * boxes_b[..., 3] - inter
    return inter / union


def random_box(rng: np.random.Generator, height: int, width: int, area_range=(0.1, 0.3),
               aspect_range=(0.5, 2.0)) -> tuple[int, int, int, int]:
    """The official Random_{10~30%} box: area fraction and aspect (w / h) uniform, placed uniformly inside the image."""
    area = rng.uniform(*area_range) * height * width
    aspect = rng.uniform(*aspect_range)
    h = int(np.sqrt(area / aspect))
    w = min(int(aspect * h), width)
    h = min(h, height)
    x = int(rng.integers(0, width - w, endpoint=True))
    y = int(rng.integers(0, height - h, endpoint=True))
    return (x, y, w, h)


def random_boxes(keys: Sequence[str | int], height: int, width: int, seed: int = 0, **kwargs) -> Tensor:
    """[len(keys), 4] random boxes, each drawn from its own generator seeded by (seed, key): the box of a sample does
    not depend on batching or on which DDP rank sees it."""
    def key_int(key):
        return zlib.crc32(key.encode()) if isinstance(key, str) else int(key)

    boxes = [random_box(np.random.default_rng([seed, key_int(k)]), height, width, **kwargs) for k in keys]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def key_axis_map(logits: Tensor, grid: tuple[int, int]) -> Tensor:
    """DAAM-style map (docs/method.md §5.4): softmax over the key (reference-token) axis, summed over keys.

    logits: [B, Lq, Lk] query-key scores of one layer. The result [B, h, w] is 1 at every query for any Lk (each
    softmax row sums to 1); with PBE's single CLIP token each row is the constant 1 = softmax of one logit. This is
    why the DAAM baseline equals the whole-image box.
    """
    return logits.float().softmax(dim=-1).sum(dim=-1).reshape(logits.shape[0], *grid)


def box_contrast_score(attribution: Tensor, box: Tensor) -> Tensor:
    """Detection confidence for COCO AP: mean min-max-normalised attribution inside the box minus the mean outside
    (0 for a box covering the whole image or a constant map). [H, W], [4] -> scalar."""
    a = attribution.float()
    a = (a - a.min()) / (a.max() - a.min()).clamp(min=1e-8)
    x, y, w, h = (int(v) for v in box)
    inside = torch.zeros_like(a, dtype=torch.bool)
    inside[y:y + h, x:x + w] = True
    if inside.all() or not inside.any():
        return a.new_tensor(0.0)
    return a[inside].mean() - a[~inside].mean()
