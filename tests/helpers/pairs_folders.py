"""``data=pairs`` folders written with PIL: reference and source images of odd, different sizes, matched by stem."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {"reference": (77, 53), "source": (141, 99), "mask": (141, 99), "reference_mask": (77, 53),
         "densepose": (141, 99)}   # (H, W), none of them the model's 128x96


def noise_image(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def box_mask(size: tuple[int, int]) -> Image.Image:
    """White on the middle half of each side."""
    mask = np.zeros(size, dtype=np.uint8)
    h, w = size
    mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    return Image.fromarray(mask)


def write_pairs(root: Path, stems=("a", "b"), masks: bool = True, densepose: bool = False) -> Path:
    """reference/<stem>.jpg and source/<stem>.png (and mask/, reference_mask/, densepose/ PNGs) for every stem."""
    for i, stem in enumerate(stems):
        folders = {"reference": ".jpg", "source": ".png"}
        if masks:
            folders.update(mask=".png", reference_mask=".png")
        if densepose:
            folders["densepose"] = ".png"
        for folder, ext in folders.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            size = SIZES[folder]
            image = box_mask(size) if folder.endswith("mask") else noise_image(size, seed=10 * i + len(folder))
            image.save(root / folder / f"{stem}{ext}")
    return root
