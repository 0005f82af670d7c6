"""Toy garments: an analytic upper-body shape on the garment canvas, filled with a procedural pattern.

The shape is a predicate on canvas coordinates, so the same function draws the cloth mask on the canvas grid and
decides, through the inverse warp, which person pixels the garment covers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from i2am.data.toy.patterns import random_texture, stamp_glyph


@dataclass(frozen=True)
class UpperBodyShape:
    """Rows ``top``..``bottom``; half width grows from ``half_top`` to ``half_chest`` at ``shoulder``; an
    elliptic neckline (``neck_depth`` x ``neck_half``) and drooping sleeves of length ``sleeve`` (0 = none)."""

    centre_col: float
    top: float
    shoulder: float
    bottom: float
    half_top: float
    half_chest: float
    neck_depth: float
    neck_half: float
    sleeve: float = 0.0
    sleeve_width: float = 0.0

    def half_width(self, rows: np.ndarray) -> np.ndarray:
        ramp = np.clip((rows - self.top) / (self.shoulder - self.top), 0.0, 1.0)
        return self.half_top + (self.half_chest - self.half_top) * ramp

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        offset = np.abs(cols - self.centre_col)
        half = self.half_width(rows)
        body = (rows >= self.top) & (rows <= self.bottom) & (offset <= half)
        neckline = ((rows - self.top) / self.neck_depth) ** 2 + (offset / self.neck_half) ** 2 < 1.0
        beyond = offset - half
        sleeve_top = self.shoulder - self.sleeve_width / 2 + 0.6 * beyond
        sleeves = (beyond > 0) & (beyond <= self.sleeve) & (rows >= sleeve_top) & (rows <= sleeve_top
                                                                                   + self.sleeve_width)
        return (body & ~neckline) | sleeves


def random_garment_shape(rng: np.random.Generator, size: tuple[int, int]) -> UpperBodyShape:
    height, width = size
    top = height * rng.uniform(0.1, 0.16)
    return UpperBodyShape(
        centre_col=(width - 1) / 2, top=top, shoulder=top + height * rng.uniform(0.06, 0.1),
        bottom=height * rng.uniform(0.84, 0.93), half_top=width * rng.uniform(0.17, 0.22),
        half_chest=width * rng.uniform(0.27, 0.34), neck_depth=height * rng.uniform(0.03, 0.09),
        neck_half=width * rng.uniform(0.07, 0.12), sleeve=width * rng.choice([0.0, rng.uniform(0.05, 0.12)]),
        sleeve_width=height * rng.uniform(0.08, 0.12))


def body_template(size: tuple[int, int]) -> UpperBodyShape:
    """The person's torso on the garment canvas (shared by all persons; the warp makes each one different)."""
    height, width = size
    return UpperBodyShape(centre_col=(width - 1) / 2, top=height * 0.08, shoulder=height * 0.17,
                          bottom=height * 0.99, half_top=width * 0.19, half_chest=width * 0.3,
                          neck_depth=height * 0.02, neck_half=width * 0.06)


def design_garment(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, UpperBodyShape]:
    """(texture uint8 [H, W, 3], shape) of a garment on the canvas of ``size``, the body frame."""
    shape = random_garment_shape(rng, size)
    texture = random_texture(size, rng)
    if rng.uniform() < 0.6:
        chest = (shape.top + 0.3 * (shape.bottom - shape.top), shape.centre_col)
        stamp_glyph(texture, rng, chest, height=size[0] * rng.uniform(0.12, 0.2))
    return texture, shape


def draw_garment(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, UpperBodyShape]:
    """(cloth uint8 [H, W, 3] on white, cloth mask bool [H, W], shape) for a garment canvas of ``size``."""
    texture, shape = design_garment(rng, size)
    rows, cols = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    mask = shape.contains(rows, cols)
    cloth = np.where(mask[..., None], texture, np.uint8(255)).astype(np.uint8)
    return cloth, mask, shape
