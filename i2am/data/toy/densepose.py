"""The toy world's DensePose-like map (``image-densepose/``), uint8 [H, W, 3], zero off the body.

``garment_uv_densepose`` (the ``garment_uv`` world) writes each body pixel's garment-canvas (u, v): it tells where in
the garment image a pixel's content comes from, a shortcut no real DensePose offers. ``body_surface_densepose`` (the
``body_surface`` world) writes a real DensePose-like IUV: the body part and normalised coordinates within that part.
"""
from __future__ import annotations

import numpy as np

PART_CODE_STEP = 40  # channel 0 holds part index x this step (1..5 -> 40..200), visible in the PNG


def garment_uv_densepose(garment_coords: np.ndarray, body: np.ndarray) -> np.ndarray:
    """(u, v, body) = (garment-canvas column, row, 1) x 255 of every body pixel; ``garment_coords`` [H, W, 2]."""
    size = body.shape
    uv = np.clip(garment_coords / np.array([size[0] - 1, size[1] - 1]), 0.0, 1.0)
    densepose = np.where(body[..., None], np.stack([uv[..., 1], uv[..., 0], np.ones(size)], axis=-1) * 255, 0)
    return np.rint(densepose).astype(np.uint8)


def body_surface_densepose(parts: list[np.ndarray], body_coords: np.ndarray, body: np.ndarray) -> np.ndarray:
    """(I, U, V): part index (1-based position in ``parts``, bool [H, W] masks in drawing order, later over earlier;
    body pixels in none count as the first) and the body-frame point (``body_coords`` [H, W, 2]) normalised to
    [0, 1] over the part's visible extent, x 255."""
    index = np.zeros(body.shape, dtype=np.int64)
    for number, part in enumerate(parts, start=1):
        index[part & body] = number
    index[body & (index == 0)] = 1
    uv = np.zeros((*body.shape, 2))
    for number in range(1, len(parts) + 1):
        inside = index == number
        if inside.any():
            low, high = body_coords[inside].min(axis=0), body_coords[inside].max(axis=0)
            uv[inside] = (body_coords[inside] - low) / np.maximum(high - low, 1e-9)
    densepose = np.stack([index * PART_CODE_STEP, uv[..., 1] * 255, uv[..., 0] * 255], axis=-1)
    return np.rint(np.where(body[..., None], densepose, 0)).astype(np.uint8)
