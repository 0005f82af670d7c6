"""Reading images and masks into the batch format of ``schema.py``, and writing deterministic PNGs.

Images become float tensors in [-1, 1], [3, H, W]; masks float {0, 1}, [1, H, W]; label maps int64 [1, H, W].
``size`` is always (H, W). Photos are resized bicubically. Masks use the box (area) filter, then a 0.5 threshold:
an output pixel is in the mask when at least half of its area is, so a box upscaled by an integer factor stays an
exact box, corners included. Code images (DensePose-like maps, label maps) use nearest neighbour, since
interpolating codes makes codes that mean nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header only."""
    with Image.open(path) as image:
        width, height = image.size
    return height, width


def _load(path: Path, mode: str, size: tuple[int, int] | None, resample: Image.Resampling) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert(mode)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), resample=resample)
        return np.array(image)


def rgb_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> [H, W, 3] uint8 (the inverse of ``rgb_to_tensor``)."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def read_rgb(path: Path, size: tuple[int, int] | None = None, nearest: bool = False) -> torch.Tensor:
    """RGB image as float [3, H, W] in [-1, 1]; ``nearest`` for coded images such as DensePose maps."""
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return rgb_to_tensor(_load(path, "RGB", size, resample))


def read_mask(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Grey mask as float {0, 1} [1, H, W]: 1 where the (area-resized) grey value is at least 128."""
    array = _load(path, "L", size, Image.Resampling.BOX)
    return torch.from_numpy(array >= 128).float().unsqueeze(0)


def read_labels(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Label map (e.g. image-parse-v3, a palette PNG) as int64 [1, H, W]."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "I"):
            image = image.convert("L")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), resample=Image.Resampling.NEAREST)
        array = np.asarray(image)
    return torch.from_numpy(array.astype(np.int64)).unsqueeze(0)


def mask_is_empty(path: Path) -> bool:
    """True when no pixel of the grey mask reaches 128 (the threshold ``read_mask`` uses)."""
    with Image.open(path) as image:
        return image.convert("L").getextrema()[1] < 128


def save_png(array: np.ndarray, path: Path) -> None:
    """Write uint8 [H, W] or [H, W, 3] as PNG with fixed settings, so the same array gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG", compress_level=6,
                                                                      optimize=False)
