"""Toy persons: background, a body silhouette at a random placement and pose, and the garment warped onto it.

``render_person`` returns every per-pixel product of one person (image, masks, labels, DensePose-like map,
correspondence); the writer only saves them. Body parts and the garment's shape are drawn in the body frame (the
garment canvas of ``body_template``); the person warp places it on the person image, and the garment's product image
shows it either on that same canvas (the ``garment_uv`` world) or at a per-sample ``ProductPlacement``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation

from i2am.data.toy.densepose import body_surface_densepose, garment_uv_densepose
from i2am.data.toy.garment import UpperBodyShape, body_template
from i2am.data.toy.patterns import random_palette
from i2am.data.toy.placement import ProductPlacement
from i2am.data.toy.warp import GarmentWarp, random_warp, sample_bilinear

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


def render_person(person: Person, size: tuple[int, int], cloth: np.ndarray, shape: UpperBodyShape,
                  placement: ProductPlacement | None = None) -> dict:
    """Everything the toy world stores for one person wearing ``cloth`` (product image of the same ``size``).

    ``placement`` None: the product image is the body frame itself and the DensePose-like map holds its (u, v) (the
    ``garment_uv`` world); otherwise the garment lies in its product image at ``placement`` and the map is a body-part
    IUV (the ``body_surface`` world). Returns uint8 ``image``, ``agnostic``, ``densepose`` [H, W, 3]; bool ``covered``
    (garment on the person), ``agnostic_mask``, ``body``; uint8 ``parse`` labels [H, W]; float32 ``correspondence``
    [H, W, 2] (product image point, -1 where uncovered); float64 ``garment_coords`` [H, W, 2] (body-frame point of
    every person pixel, for warping other garments).
    """
    height, width = size
    points = np.stack(np.mgrid[0:height, 0:width], axis=-1).astype(np.float64)
    garment_coords = person.warp.to_garment(points)
    covered = shape.contains(garment_coords[..., 0], garment_coords[..., 1])
    source = garment_coords if placement is None else placement.to_product(garment_coords)
    correspondence = np.where(covered[..., None], source, -1.0).astype(np.float32)

    blend = np.linspace(0.0, 1.0, height)[:, None, None]
    image = (1 - blend) * person.colours[0] + blend * person.colours[1] + np.zeros((1, width, 1))
    parse = np.full(size, BACKGROUND, dtype=np.uint8)
    part_colour = {PANTS: person.colours[4], NECK: person.colours[2], LEFT_ARM: person.colours[2],
                   RIGHT_ARM: person.colours[2], FACE: person.colours[2], HAIR: person.colours[3]}
    regions = body_parts(person, size, points, garment_coords)
    for label, region in regions.items():
        image[region], parse[region] = part_colour[label], label
    image[covered] = sample_bilinear(cloth, correspondence[covered].astype(np.float64))
    parse[covered] = UPPER_CLOTHES
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    body = parse != BACKGROUND
    upper = covered | np.isin(parse, (NECK, LEFT_ARM, RIGHT_ARM)) & ~_head_and_neck(parse, garment_coords, size)
    agnostic_mask = binary_dilation(upper, iterations=max(1, round(width * 0.02)))
    agnostic = np.where(agnostic_mask[..., None], np.uint8(AGNOSTIC_GREY), image)

    if placement is None:
        densepose = garment_uv_densepose(garment_coords, body)
    else:
        torso = body_template(size).contains(garment_coords[..., 0], garment_coords[..., 1])
        head = regions[FACE] | regions[HAIR] | (regions[NECK] & ~torso)
        parts = [torso, regions[PANTS] & ~torso, head, regions[LEFT_ARM], regions[RIGHT_ARM]]
        densepose = body_surface_densepose(parts, garment_coords, body)
    return {"image": image, "agnostic": agnostic, "agnostic_mask": agnostic_mask, "covered": covered, "body": body,
            "parse": parse, "densepose": densepose, "correspondence": correspondence, "garment_coords": garment_coords}


def _head_and_neck(parse: np.ndarray, garment_coords: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The neck above the garment canvas's neckline stays visible in the agnostic image, as in VITON-HD."""
    return (parse == NECK) & (garment_coords[..., 0] < body_template(size).top + size[0] * 0.02)


def warp_garment(cloth: np.ndarray, shape: UpperBodyShape, garment_coords: np.ndarray,
                 placement: ProductPlacement | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Any garment (product image ``cloth`` at ``placement``, as in ``render_person``) on a person's torso (body-frame
    ``garment_coords``): (warped cloth uint8 [H, W, 3] on white, its mask bool [H, W])."""
    covered = shape.contains(garment_coords[..., 0], garment_coords[..., 1])
    source = garment_coords[covered] if placement is None else placement.to_product(garment_coords[covered])
    warped = np.full(cloth.shape, 255.0)
    warped[covered] = sample_bilinear(cloth, source.astype(np.float32).astype(np.float64))
    return np.clip(np.rint(warped), 0, 255).astype(np.uint8), covered
