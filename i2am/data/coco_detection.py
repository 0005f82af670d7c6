"""The COCO detection set of docs/method.md §5.1: build it with pycocotools, then read what was built.

Builder input (``coco_root``): ``annotations/instances_<split>.json`` and ``<split>/`` (e.g. val2017).
For every image, in the annotation file's image order, the *first* annotation (file order) whose bbox covers
10-30 % of the image (bounds inclusive, bbox area w*h over image area) is kept; images without one are skipped.
Builder output (``out_dir``):
```
images/<stem>.<ext>       the original file, copied byte for byte
masks/<stem>.png          255 on the filled bbox (the pixel rectangle covering the float box), 0 elsewhere
references/<stem>.png     the bbox crop of the image
records/<stem>.json       {sample_id, image_id, annotation_id, file_name, width, height, bbox (COCO xywh),
                           area_fraction, category_id, category_name, image, mask, reference (paths in out_dir)}
index.json                every record, in order; written last, so its presence means the set is complete
```
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from i2am.data import schema
from i2am.data.boxes import box_mask, pixel_box, rescale_xywh
from i2am.data.image_io import image_size, read_mask, read_rgb, save_png
from i2am.data.layout import LayoutCheck, check_validation_level

INDEX_FILE = "index.json"


def select_annotation(annotations: list[dict], image_area: float, area_range: tuple[float, float] = (0.1, 0.3)
                      ) -> dict | None:
    """The first annotation whose bbox area is within ``area_range`` (fractions of the image, inclusive)."""
    low, high = area_range
    for annotation in annotations:
        fraction = annotation["bbox"][2] * annotation["bbox"][3] / image_area
        if low <= fraction <= high:
            return annotation
    return None


def _load_coco(annotation_file: Path):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return COCO(str(annotation_file))


def build_coco_detection_set(coco_root: str | Path, out_dir: str | Path, split: str = "val2017",
                             area_range: tuple[float, float] = (0.1, 0.3), limit: int | None = None) -> list[dict]:
    """Select one object per image and write the detection set; returns the records (also in ``index.json``).

    Every input problem (missing annotation file, image folder or image file, image size differing from the
    annotation file) is reported together before anything is written.
    """
    coco_root, out_dir = Path(coco_root), Path(out_dir)
    check = LayoutCheck("COCO", coco_root)
    annotation_file = check.file(coco_root / "annotations" / f"instances_{split}.json")
    image_dir = coco_root / split
    if not image_dir.is_dir():
        check.add(f"missing folder {image_dir}")
    check.raise_if_any()
    coco = _load_coco(annotation_file)
    chosen = []
    for image_id in coco.getImgIds():
        info = coco.imgs[image_id]
        annotation = select_annotation(coco.loadAnns(coco.getAnnIds(imgIds=image_id)), info["width"] * info["height"],
                                       area_range)
        if annotation is not None:
            chosen.append((info, annotation))
    chosen = chosen[:limit]
    for info, _ in chosen:
        path = check.file(image_dir / info["file_name"])
        if path is not None and image_size(path) != (info["height"], info["width"]):
            check.add(f"size mismatch: {path} is {image_size(path)} (HxW) but {annotation_file} says "
                      f"{(info['height'], info['width'])}")
    check.raise_if_any()
    records = [_write_sample(out_dir, image_dir, info, annotation, coco.cats[annotation["category_id"]]["name"])
               for info, annotation in chosen]
    (out_dir / INDEX_FILE).write_text(json.dumps(records, indent=1) + "\n")
    return records


def _write_sample(out_dir: Path, image_dir: Path, info: dict, annotation: dict, category: str) -> dict:
    source, stem = image_dir / info["file_name"], Path(info["file_name"]).stem
    height, width = info["height"], info["width"]
    record = {"sample_id": stem, "image_id": info["id"], "annotation_id": annotation["id"],
              "file_name": info["file_name"], "width": width, "height": height,
              "bbox": [float(v) for v in annotation["bbox"]],
              "area_fraction": annotation["bbox"][2] * annotation["bbox"][3] / (width * height),
              "category_id": annotation["category_id"], "category_name": category,
              "image": f"images/{info['file_name']}", "mask": f"masks/{stem}.png",
              "reference": f"references/{stem}.png"}
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_dir / record["image"])
    save_png(box_mask(record["bbox"], height, width), out_dir / record["mask"])
    x0, y0, x1, y1 = pixel_box(record["bbox"], height, width)
    with Image.open(source) as image:
        save_png(np.asarray(image.convert("RGB"))[y0:y1, x0:x1], out_dir / record["reference"])
    (out_dir / "records").mkdir(parents=True, exist_ok=True)
    (out_dir / "records" / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


class CocoDetectionDataset(Dataset):
    """Reads a built detection set: ``image``, ``inpaint_mask`` (1 on the box), ``reference`` (the crop),
    ``bbox`` (xywh in pixels of ``size``), ``category``, ``sample_id``; images at ``size`` (512x512 default)."""

    def __init__(self, root: str | Path, size: tuple[int, int] = (512, 512),
                 reference_size: tuple[int, int] = (224, 224), limit: int | None = None, validate: str = "full"):
        self.root, self.size = Path(root), (int(size[0]), int(size[1]))
        self.reference_size = (int(reference_size[0]), int(reference_size[1]))
        check_validation_level(validate)
        check = LayoutCheck("COCO detection set", self.root)
        index = check.file(self.root / INDEX_FILE)
        if index is None:
            check.add(f"build it first with i2am.data.coco_detection.build_coco_detection_set(coco_root, {self.root})")
        check.raise_if_any()
        self.records = json.loads(index.read_text())[:limit]
        for record in self.records:
            paths = [check.file(self.root / record[key]) for key in ("image", "mask", "reference")]
            if validate != "off":
                check.same_size(paths[0], paths[1])
            if validate == "full":
                check.not_empty(paths[1])
        check.raise_if_any()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        return {schema.SAMPLE_ID: record["sample_id"],
                schema.IMAGE: read_rgb(self.root / record["image"], self.size),
                schema.INPAINT_MASK: read_mask(self.root / record["mask"], self.size),
                schema.REFERENCE: read_rgb(self.root / record["reference"], self.reference_size),
                schema.BBOX: rescale_xywh(record["bbox"], (record["height"], record["width"]), self.size),
                schema.CATEGORY: record["category_name"]}

