"""Toy persons: background, a body silhouette at a random placement and pose, and the garment warped onto it.

``render_person`` returns every per-pixel product of one person (image, masks, labels, DensePose-like map,
correspondence); the writer only saves them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, map_coordinates

from i2am.data.toy.garment import UpperBodyShape, body_template
from i2am.data.toy.patterns import random_palette
from i2am.data.toy.warp import GarmentWarp, random_warp

# LIP / VITON-HD image-parse-v3 labels used by the toy world
BACKGROUND, HAIR, UPPER_CLOTHES, PANTS, NECK, FACE, LEFT_ARM, RIGHT_ARM = 0, 2, 5, 9, 10, 13, 14, 15
AGNOSTIC_GREY = 128


@dataclass(frozen=True)
class Person:
    warp: GarmentWarp
    arm_angles: tuple[float, float]  # outward swing of each arm from the body's down direction, radians
    colours: np.ndarray              # [5, 3] uint8: background top, background bottom, skin, hair, pants


def random_person(rng: np.random.Generator, size: tuple[int, int]) -> Person:
    skin = np.array([[rng.uniform(150, 240), rng.uniform(110, 190), rng.uniform(80, 160)]])
    background = 255 - rng.uniform(10, 60, size=(2, 3))
    colours = np.concatenate([background, skin, random_palette(rng, 2) // 2])
    return Person(warp=random_warp(rng, size), arm_angles=tuple(np.deg2rad(rng.uniform(8, 30, size=2))),
                  colours=np.rint(colours).astype(np.uint8))


def _capsule(points: np.ndarray, start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """bool [H, W]: pixels within ``radius`` of the segment start-end (all (row, col))."""
    direction = end - start
    t = np.clip(((points - start) @ direction) / (direction @ direction), 0.0, 1.0)
    return np.linalg.norm(points - (start + t[..., None] * direction), axis=-1) <= radius


def _ellipse(points: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return (((points - centre) / radii) ** 2).sum(-1) <= 1.0


def _sample(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear sample of uint8 [H, W, 3] at float (row, col) [N, 2] -> float [N, 3] (pixel centres at integers)."""
    return np.stack([map_coordinates(image[..., ch].astype(np.float64), coords.T, order=1, mode="nearest")
                     for ch in range(3)], axis=-1)


def body_parts(person: Person, size: tuple[int, int], points: np.ndarray, garment_coords: np.ndarray
               ) -> dict[int, np.ndarray]:
    """Parse label -> bool [H, W] for each body part, in drawing order (later parts are drawn over earlier)."""
    height, width = size
    warp, template = person.warp, body_template(size)
    scale = float(np.sqrt(abs(np.linalg.det(warp.matrix))))
    torso = template.contains(garment_coords[..., 0], garment_coords[..., 1])
    waist = garment_coords[..., 0] >= height * 0.9
    centre = template.centre_col
    down = warp.matrix @ np.array([1.0, 0.0])
    down /= np.linalg.norm(down)
    hip_offset = width * 0.14
    hips = warp.to_person(np.array([[template.bottom, centre - hip_offset], [template.bottom, centre + hip_offset]]))
    legs = (_capsule(points, hips[0], hips[0] + down * height, width * 0.12 * scale)
            | _capsule(points, hips[1], hips[1] + down * height, width * 0.12 * scale))
    neck_base = warp.to_person(np.array([template.top + height * 0.02, centre]))
    head_centre = neck_base - down * height * 0.14 * scale
    head = _ellipse(points, head_centre, np.array([height * 0.1, width * 0.11]) * scale)
    hair = head & (points[..., 0] < head_centre[0] - height * 0.03 * scale)
    arms = {}
    for label, side, angle in ((LEFT_ARM, -1.0, person.arm_angles[0]), (RIGHT_ARM, 1.0, person.arm_angles[1])):
        shoulder = warp.to_person(np.array([template.shoulder, centre + side * template.half_chest * 0.92]))
        direction = np.cos(angle) * down + side * np.sin(angle) * np.array([-down[1], down[0]])
        arms[label] = _capsule(points, shoulder, shoulder + direction * height * 0.55 * scale, width * 0.07 * scale)
    return {PANTS: legs | (torso & waist), NECK: (torso & ~waist)
            | _capsule(points, neck_base, head_centre, width * 0.05 * scale),
            LEFT_ARM: arms[LEFT_ARM], RIGHT_ARM: arms[RIGHT_ARM], FACE: head, HAIR: hair}


def render_person(person: Person, size: tuple[int, int], cloth: np.ndarray, shape: UpperBodyShape) -> dict:
    """Everything the toy world stores for one person wearing ``cloth`` (garment canvas of the same ``size``).

    Returns uint8 ``image``, ``agnostic``, ``densepose`` [H, W, 3]; bool ``covered`` (garment on the person),
    ``agnostic_mask``, ``body``; uint8 ``parse`` labels [H, W]; float32 ``correspondence`` [H, W, 2] (-1 where
    uncovered); float64 ``garment_coords`` [H, W, 2] (canvas point of every person pixel, for warping other garments).
    """
    height, width = size
    points = np.stack(np.mgrid[0:height, 0:width], axis=-1).astype(np.float64)
    garment_coords = person.warp.to_garment(points)
    covered = shape.contains(garment_coords[..., 0], garment_coords[..., 1])
    correspondence = np.where(covered[..., None], garment_coords, -1.0).astype(np.float32)

    blend = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - blend) * person.colours[0] + blend * person.colours[1] + np.zeros((1, width, 1))
    parse = np.full(size, BACKGROUND, dtype=np.uint8)
    part_colour = {PANTS: person.colours[4], NECK: person.colours[2], LEFT_ARM: person.colours[2],
                   RIGHT_ARM: person.colours[2], FACE: person.colours[2], HAIR: person.colours[3]}
    for label, region in body_parts(person, size, points, garment_coords).items():
        image[region], parse[region] = part_colour[label], label
    image[covered] = _sample(cloth, correspondence[covered].astype(np.float64))
    parse[covered] = UPPER_CLOTHES
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    body = parse != BACKGROUND
    upper = covered | np.isin(parse, (NECK, LEFT_ARM, RIGHT_ARM)) & ~_head_and_neck(parse, garment_coords, size)
    agnostic_mask = binary_dilation(upper, iterations=max(1, round(width * 0.02)))
    agnostic = np.where(agnostic_mask[..., None], np.uint8(AGNOSTIC_GREY), image)

    uv = np.clip(garment_coords / np.array([height - 1, width - 1]), 0.0, 1.0)
    densepose = np.where(body[..., None], np.stack([uv[..., 1], uv[..., 0], np.ones(size)], axis=-1) * 255, 0)
    return {"image": image, "agnostic": agnostic, "agnostic_mask": agnostic_mask, "covered": covered, "body": body,
            "parse": parse, "densepose": np.rint(densepose).astype(np.uint8), "correspondence": correspondence,
            "garment_coords": garment_coords}


def _head_and_neck(parse: np.ndarray, garment_coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The neck above the garment canvas's neckline stays visible in the agnostic image, as in VITON-HD."""
    return (parse == NECK) & (garment_coords[..., 0] < body_template(size).top + size[0] * 0.02)


def warp_garment(cloth: np.ndarray, shape: UpperBodyShape, garment_coords: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Any garment on a person's torso: (warped cloth uint8 [H, W, 3] on white, its mask bool [H, W])."""
    covered = shape.contains(garment_coords[..., 0], garment_coords[..., 1])
    warped = np.full(cloth.shape, 255.0)
    warped[covered] = _sample(cloth, garment_coords[covered].astype(np.float32).astype(np.float64))
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8), covered
