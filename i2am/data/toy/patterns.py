"""Procedural textures for toy garments and toy objects: stripes, checks, chevrons, dots, glyph "logos".

Every function is vectorised numpy over the pixel grid and draws its randomness from the ``rng`` it is given.
"""
from __future__ import annotations

import numpy as np
from skimage.color import hsv2rgb

PATTERNS = ("stripes", "checks", "chevrons", "dots", "plain")


def random_palette(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` uint8 RGB colours with well-separated hues and varied value, so patterns stay visible."""
    hues = (rng.uniform() + np.arange(count) / count + rng.uniform(-0.08, 0.08, count)) % 1.0
    hsv = np.stack([hues, rng.uniform(0.45, 1.0, count), rng.uniform(0.35, 0.95, count)], axis=-1)
    return np.rint(hsv2rgb(hsv[None])[0] * 255).astype(np.uint8)


def _rotated_coords(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    return (rows * np.cos(angle) + cols * np.sin(angle), -rows * np.sin(angle) + cols * np.cos(angle))


def pattern_index(kind: str, shape: tuple[int, int], rng: np.random.Generator, colours: int) -> np.ndarray:
    """int [H, W] map of palette indices for one pattern kind; periods scale with the image size."""
    u, v = _rotated_coords(shape, rng)
    period = rng.uniform(0.08, 0.2) * min(shape)
    if kind == "stripes":
        return (np.floor(u / period) % colours).astype(np.int64)
    if kind == "checks":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.int64)
    if kind == "chevrons":
        zigzag = np.abs((v / period) % 2.0 - 1.0) * period
        return (np.floor((u + zigzag) / period) % colours).astype(np.int64)
    if kind == "dots":
        nearest_u, nearest_v = u - period * np.round(u / period), v - period * np.round(v / period)
        return (np.hypot(nearest_u, nearest_v) < period * rng.uniform(0.2, 0.4)).astype(np.int64)
    if kind == "plain":
        return np.zeros(shape, dtype=np.int64)
    raise ValueError(f"unknown pattern {kind!r}; expected one of {PATTERNS}")


def random_texture(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3]: a random pattern in a random 2-3 colour palette."""
    kind = PATTERNS[rng.integers(len(PATTERNS))]
    colours = int(rng.integers(2, 4))
    return random_palette(rng, colours)[pattern_index(kind, shape, rng, colours)]


def glyph(rng: np.random.Generator, cells: int = 5) -> np.ndarray:
    """bool [cells, cells]: a left-right symmetric random glyph (an identicon), never empty."""
    half = rng.uniform(size=(cells, (cells + 1) // 2)) < 0.5
    half[cells // 2, 0] = True
    return np.concatenate([half, half[:, : cells // 2][:, ::-1]], axis=1)


def stamp_glyph(image: np.ndarray, rng: np.random.Generator, centre: tuple[float, float], height: float) -> None:
    """Draw a random glyph "logo" of about ``height`` pixels at ``centre`` (row, col), in place."""
    pattern = glyph(rng)
    cell = max(1, round(height / pattern.shape[0]))
    logo = np.kron(pattern, np.ones((cell, cell), dtype=bool))
    top = round(centre[0] - logo.shape[0] / 2)
    left = round(centre[1] - logo.shape[1] / 2)
    region = image[top: top + logo.shape[0], left: left + logo.shape[1]]
    region[logo[: region.shape[0], : region.shape[1]]] = random_palette(rng, 1)[0]
