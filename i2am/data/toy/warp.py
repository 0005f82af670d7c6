"""The known, non-trivial garment-to-person transform of the toy world.

A garment canvas point g (row, col) goes to the person image as
    q  = g - c                                  (centred on the canvas centre c)
    q1 = (q_r, q_c + a sin(2 pi q_r / L + phi))  (a smooth sideways bend down the garment)
    q2 = (q1_r + b (q1_c / w)^2, q1_c)           (a curved hem/chest line)
    p  = t + M q2                                (M = rotation x shear x anisotropic scale, t = torso centre)
Each step is invertible in closed form, so the inverse (person -> garment) is exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates


@dataclass(frozen=True)
class GarmentWarp:
    canvas_centre: np.ndarray  # (2,) (row, col) on the garment canvas
    matrix: np.ndarray         # (2, 2) acting on (row, col)
    offset: np.ndarray         # (2,) torso centre on the person image
    bend_amplitude: float
    bend_wavelength: float
    bend_phase: float
    curve: float
    curve_half_width: float

    def _bend(self, rows: np.ndarray) -> np.ndarray:
        return self.bend_amplitude * np.sin(2 * np.pi * rows / self.bend_wavelength + self.bend_phase)

    def _curve(self, cols: np.ndarray) -> np.ndarray:
        return self.curve * (cols / self.curve_half_width) ** 2

    def to_person(self, garment: np.ndarray) -> np.ndarray:
        """[..., 2] garment canvas (row, col) -> [..., 2] person image (row, col)."""
        q = garment - self.canvas_centre
        cols = q[..., 1] + self._bend(q[..., 0])
        rows = q[..., 0] + self._curve(cols)
        return np.stack([rows, cols], axis=-1) @ self.matrix.T + self.offset

    def to_garment(self, person: np.ndarray) -> np.ndarray:
        """[..., 2] person image (row, col) -> [..., 2] garment canvas (row, col); exact inverse of to_person."""
        q2 = (person - self.offset) @ np.linalg.inv(self.matrix).T
        rows = q2[..., 0] - self._curve(q2[..., 1])
        cols = q2[..., 1] - self._bend(rows)
        return np.stack([rows, cols], axis=-1) + self.canvas_centre


def random_warp(rng: np.random.Generator, size: tuple[int, int]) -> GarmentWarp:
    """A torso placement for a person image of ``size`` (H, W), in upper-body framing like VITON-HD."""
    height, width = size
    scale = rng.uniform(0.68, 0.82) * rng.uniform(0.94, 1.06, size=2)
    angle, shear = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(-0.15, 0.15)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    matrix = rotation @ np.array([[1.0, 0.0], [shear, 1.0]]) @ np.diag(scale)
    return GarmentWarp(
        canvas_centre=np.array([(height - 1) / 2, (width - 1) / 2]),
        matrix=matrix,
        offset=np.array([height * rng.uniform(0.53, 0.6), width * rng.uniform(0.43, 0.57)]),
        bend_amplitude=width * rng.uniform(0.02, 0.05) * rng.choice([-1, 1]),
        bend_wavelength=height * rng.uniform(0.9, 1.6),
        bend_phase=rng.uniform(0, 2 * np.pi),
        curve=height * rng.uniform(-0.04, 0.04),
        curve_half_width=width * 0.3,
    )


def sample_bilinear(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear sample of uint8 [H, W, 3] at float (row, col) [N, 2] -> float [N, 3] (pixel centres at integers)."""
    return np.stack([map_coordinates(image[..., ch].astype(np.float64), coords.T, order=1, mode="nearest")
                     for ch in range(3)], axis=-1)
