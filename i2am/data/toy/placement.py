"""Where a garment lies in its product image (the ``body_surface`` world): a per-sample smooth, non-affine map from the
body frame, in which the garment is designed and the person wears it, to the product image.

The map is a :class:`GarmentWarp` (scale x shear x rotation, a sideways bend and a curve, all closed-form invertible)
scaled and shifted so that the whole garment fits in the product image. The person-side inputs only know the body
frame, so where a body point's garment content sits in the product image is told by the product image alone.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from i2am.data.toy.garment import UpperBodyShape, design_garment
from i2am.data.toy.warp import GarmentWarp, sample_bilinear

MARGIN = 0.03  # share of each side of the product image the garment keeps free


@dataclass(frozen=True)
class ProductPlacement:
    warp: GarmentWarp  # its "garment" side is the body frame, its "person" side the product image

    def to_product(self, body: np.ndarray) -> np.ndarray:
        """[..., 2] body-frame (row, col) -> [..., 2] product image (row, col)."""
        return self.warp.to_person(body)

    def to_body(self, product: np.ndarray) -> np.ndarray:
        """[..., 2] product image (row, col) -> [..., 2] body frame (row, col); exact inverse of to_product."""
        return self.warp.to_garment(product)


def random_placement(rng: np.random.Generator, size: tuple[int, int], shape: UpperBodyShape) -> ProductPlacement:
    """A placement of ``shape`` (body frame of ``size``) in a product image of ``size``: random anisotropic scale,
    shear, rotation, bend and curve, then the largest scale that fits times U(0.7, 1) and a random shift within the
    room left."""
    height, width = size
    angle, shear = np.deg2rad(rng.uniform(-8, 8)), rng.uniform(-0.25, 0.25)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    matrix = rotation @ np.array([[1.0, 0.0], [shear, 1.0]]) @ np.diag(rng.uniform(0.8, 1.2, size=2))
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    shape_warp = GarmentWarp(
        canvas_centre=centre, matrix=matrix, offset=np.zeros(2),
        bend_amplitude=width * rng.uniform(0.05, 0.09) * rng.choice([-1, 1]),
        bend_wavelength=height * rng.uniform(0.8, 1.4), bend_phase=rng.uniform(0, 2 * np.pi),
        curve=height * rng.uniform(0.04, 0.08) * rng.choice([-1, 1]), curve_half_width=width * 0.3)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    inside = shape.contains(rows, cols)
    placed = shape_warp.to_person(np.stack([rows[inside], cols[inside]], axis=-1))
    low, high = placed.min(axis=0) - 0.5, placed.max(axis=0) + 0.5
    room = np.array([height, width]) * (1 - 2 * MARGIN)
    scale = float(np.min(room / (high - low))) * rng.uniform(0.7, 1.0)
    first = np.array([height, width]) * MARGIN - scale * low
    last = np.array([height, width]) * (1 - MARGIN) - scale * high
    offset = first + rng.uniform(size=2) * (last - first)
    return ProductPlacement(replace(shape_warp, matrix=scale * matrix, offset=offset))


def draw_placed_garment(rng: np.random.Generator, placement_rng: np.random.Generator, size: tuple[int, int]
                        ) -> tuple[np.ndarray, np.ndarray, UpperBodyShape, ProductPlacement]:
    """(product image uint8 [H, W, 3] on white, its garment mask bool [H, W], shape, placement): a garment designed in
    the body frame (``design_garment``, from ``rng``) and shown at a random placement (from ``placement_rng``)."""
    texture, shape = design_garment(rng, size)
    placement = random_placement(placement_rng, size, shape)
    product = np.stack(np.mgrid[0:size[0], 0:size[1]], axis=-1).reshape(-1, 2).astype(np.float64)
    body = placement.to_body(product)
    mask = shape.contains(body[:, 0], body[:, 1]).reshape(size)
    colours = sample_bilinear(texture, body).reshape(*size, 3)
    cloth = np.where(mask[..., None], np.clip(np.rint(colours), 0, 255), 255).astype(np.uint8)
    return cloth, mask, shape, placement
