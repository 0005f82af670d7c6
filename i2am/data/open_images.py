"""Open Images (the data Paint-by-Example was trained on): images and the official bounding-box CSVs.

```
<root>/images/<split>/<ImageID>.jpg          alias: <root>/<split>/
<root>/annotations/<split>-annotations-bbox.csv
        also accepted: oidv6-<split>-annotations-bbox.csv, oidv7-<split>-annotations-bbox.csv
        columns used: ImageID, LabelName, XMin, XMax, YMin, YMax (fractions of the image), IsGroupOf
<root>/annotations/class-descriptions-boxable.csv   optional, "<LabelName>,<DisplayName>" without header
        also accepted: oidv7-class-descriptions-boxable.csv
```
Splits: train, validation, test. Per image (in the CSV's order of first appearance), the first box whose area covers
``area_range`` of the image is kept (group boxes skipped), as for the COCO detection set.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from i2am.data import schema
from i2am.data.boxes import box_mask, pixel_box
from i2am.data.image_io import IMAGE_EXTENSIONS, read_rgb, rgb_to_tensor
from i2am.data.layout import FileIndex, FolderSpec, LayoutCheck

SPLITS = ("train", "validation", "test")
CLASS_FILES = ("class-descriptions-boxable.csv", "oidv7-class-descriptions-boxable.csv")


@dataclass(frozen=True)
class BoxSample:
    image_id: str
    label: str
    box: tuple[float, float, float, float]  # XMin, YMin, XMax, YMax as fractions


def read_boxes(csv_path: Path, area_range: tuple[float, float], skip_group_boxes: bool = True) -> list[BoxSample]:
    chosen: dict[str, BoxSample] = {}
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["ImageID"] in chosen or (skip_group_boxes and row.get("IsGroupOf") == "1"):
                continue
            x0, x1, y0, y1 = (float(row[k]) for k in ("XMin", "XMax", "YMin", "YMax"))
            if area_range[0] <= (x1 - x0) * (y1 - y0) <= area_range[1]:
                chosen[row["ImageID"]] = BoxSample(row["ImageID"], row["LabelName"], (x0, y0, x1, y1))
    return list(chosen.values())


def read_class_names(annotation_dir: Path) -> dict[str, str]:
    for name in CLASS_FILES:
        if (annotation_dir / name).is_file():
            with (annotation_dir / name).open(newline="") as handle:
                return {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
    return {}


class OpenImagesDataset(Dataset):
    """``image``, ``inpaint_mask`` (1 on the box), ``reference`` (the box crop), ``bbox`` (xywh in pixels of
    ``size``), ``category`` (display name when the class file is present, else the LabelName), ``sample_id``.

    missing_images: "error" lists every selected image that is not on disk; "skip" drops them (for partial
    downloads of the 1.7 M training images).
    """

    def __init__(self, root: str | Path, split: str = "validation", size: tuple[int, int] = (512, 512),
                 reference_size: tuple[int, int] = (224, 224), area_range: tuple[float, float] = (0.1, 0.3),
                 limit: int | None = None, missing_images: str = "error"):
        if split not in SPLITS or missing_images not in ("error", "skip"):
            raise ValueError(f"split={split!r}, missing_images={missing_images!r}; expected split in {SPLITS}, "
                             "missing_images in ('error', 'skip')")
        self.root, self.size = Path(root), tuple(map(int, size))
        self.reference_size = tuple(map(int, reference_size))
        check = LayoutCheck("Open Images", self.root)
        annotations = self.root / "annotations"
        csv_path = check.file(annotations / f"{split}-annotations-bbox.csv",
                              accepted=(f"oidv6-{split}-annotations-bbox.csv", f"oidv7-{split}-annotations-bbox.csv"))
        image_dir = self.root / "images"
        image_dir = check.folder(image_dir if image_dir.is_dir() else self.root, FolderSpec(split))
        check.raise_if_any()
        samples = read_boxes(csv_path, tuple(area_range))
        index = FileIndex(image_dir, IMAGE_EXTENSIONS)
        paths = [index.find(sample.image_id, ".jpg") for sample in samples]
        kept = [(s, p) for s, p in zip(samples, paths) if p is not None or missing_images == "error"][:limit]
        self.samples, self.paths = [s for s, _ in kept], [p for _, p in kept]
        missing = [s.image_id for s, p in zip(self.samples, self.paths) if p is None]
        if missing:
            check.add(f"{image_dir}: {len(missing)} image(s) listed in {csv_path} missing: " + ", ".join(missing))
        check.raise_if_any()
        self.class_names = read_class_names(annotations)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample, path = self.samples[index], self.paths[index]
        height, width = self.size
        x0, y0, x1, y1 = sample.box
        bbox = torch.tensor([x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height])
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            crop = pixel_box(((x0 * rgb.width), y0 * rgb.height, (x1 - x0) * rgb.width, (y1 - y0) * rgb.height),
                             rgb.height, rgb.width)
            reference = rgb.crop(crop).resize(self.reference_size[::-1], resample=Image.Resampling.BICUBIC)
        return {schema.SAMPLE_ID: sample.image_id,
                schema.IMAGE: read_rgb(path, self.size),
                schema.INPAINT_MASK: torch.from_numpy(box_mask(bbox, height, width) >= 128).float().unsqueeze(0),
                schema.REFERENCE: rgb_to_tensor(reference),
                schema.BBOX: bbox,
                schema.CATEGORY: self.class_names.get(sample.label, sample.label)}
