"""``write_toy_coco``: textured shapes on photographs with a COCO-format annotation file.

```
<root>/annotations/instances_val2017.json   images, annotations (bbox, area, polygon segmentation), categories
<root>/val2017/<image_id:012d>.png
```
Backgrounds are crops of scikit-image's bundled photographs. Each image holds 1-3 objects whose box areas are drawn
log-uniformly between 2 % and 50 % of the image, so the detection-set rule (first box at 10-30 %) picks the first
object in some images, a later one in others, and none in a few. Bounding boxes and areas come from the rasterised
polygon (pycocotools), so they agree exactly with the drawn pixels. Later objects may occlude earlier ones.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from i2am.data.image_io import save_png
from i2am.data.toy.patterns import random_texture

CATEGORIES = ("disc", "block", "triangle", "star", "hexagon")
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
AREA_RANGE = (0.02, 0.5)


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    photo = _photo(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    crop_h = int(photo.shape[0] * rng.uniform(0.5, 1.0))
    crop_w = min(photo.shape[1], round(crop_h * size[1] / size[0]))
    top, left = rng.integers(photo.shape[0] - crop_h + 1), rng.integers(photo.shape[1] - crop_w + 1)
    crop = Image.fromarray(photo[top: top + crop_h, left: left + crop_w])
    return np.asarray(crop.resize((size[1], size[0]), resample=Image.Resampling.BICUBIC))


def _polygon(kind: str, x0: float, y0: float, w: float, h: float) -> np.ndarray:
    """[N, 2] (x, y) vertices of a shape fitted into the box (x0, y0, w, h)."""
    vertices = {"disc": 32, "hexagon": 6, "star": 10}
    if kind == "block":
        unit = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    elif kind == "triangle":
        unit = np.array([[0.5, 0], [1, 1], [0, 1]], dtype=np.float64)
    else:
        angles = -np.pi / 2 + np.arange(vertices[kind]) * 2 * np.pi / vertices[kind]
        radius = np.where(np.arange(vertices[kind]) % 2 == 1, 0.45, 1.0)[:, None] if kind == "star" else 1.0
        unit = 0.5 + 0.5 * radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return np.array([x0, y0]) + unit * np.array([w, h])


def _objects(rng: np.random.Generator, size: tuple[int, int]) -> list[tuple[int, np.ndarray]]:
    """(category index, polygon) per object."""
    height, width = size
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        fraction = np.exp(rng.uniform(*np.log(AREA_RANGE)))
        aspect = rng.uniform(0.6, 1.6)
        w = min(width - 1.0, np.sqrt(fraction * height * width * aspect))
        h = min(height - 1.0, fraction * height * width / w)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        category = int(rng.integers(len(CATEGORIES)))
        objects.append((category, _polygon(CATEGORIES[category], x0, y0, w, h)))
    return objects


def write_toy_coco(root: str | Path, n: int = 64, size: tuple[int, int] = (128, 128), seed: int = 0) -> Path:
    """Write ``n`` toy scenes of ``size`` (H, W) and ``annotations/instances_val2017.json``; returns ``root``."""
    root, size = Path(root), (int(size[0]), int(size[1]))
    if n < 1 or min(size) < 16:
        raise ValueError(f"toy COCO needs n >= 1 and size >= 16x16; got n={n}, size={size}")
    images, annotations = [], []
    for index in range(n):
        rng = np.random.default_rng([seed, index])
        image_id, file_name = index + 1, f"{index + 1:012d}.png"
        image = _background(rng, size).copy()
        for category, polygon in _objects(rng, size):
            segmentation = [np.round(polygon, 2).ravel().tolist()]
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, size[0], size[1]))
            inside = mask_utils.decode(rle).astype(bool)
            image[inside] = random_texture(size, rng)[inside]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category + 1,
                "segmentation": segmentation, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
        save_png(image, root / "val2017" / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
    coco = {"info": {"description": f"i2am toy COCO (n={n}, size={list(size)}, seed={seed})"}, "licenses": [],
            "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(coco) + "\n")
    return root
