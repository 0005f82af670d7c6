"""VITON-HD (``zalando-hd-resized``) in its on-disk layout, with StableVITON's and DCI-VTON's extra folders.

```
<root>/{train,test}_pairs.txt      "<person> <garment>" per line (VITON-HD file names, e.g. 000006_00.jpg)
<root>/{train,test}/image/                 person photos                              (required)
                   cloth/, cloth-mask/     in-shop garment and its mask              (required)
                   agnostic-mask/          <name>_mask.png, 255 = try-on region      (required)
                   agnostic-v3.2/          alias agnostic/: person, try-on region greyed     (extra "agnostic")
                   image-densepose/        alias densepose/                                  (extra "densepose")
                   gt_cloth_warped_mask/   StableVITON's warped-garment mask       (extra "gt_cloth_warped_mask")
                   cloth-warp/, cloth-warp-mask/, unpaired-cloth-warp/, unpaired-cloth-warp-mask/
                                           DCI-VTON's warped garments, named by person       (extra "cloth_warp")
                   image-parse-v3/         label map                                       (extra "image_parse")
                   openpose_json/          <name>_keypoints.json                        (extra "pose_keypoints")
                   correspondence/         toy world only, <name>.npy                   (extra "correspondence")
```
Files are matched by stem, so ``.jpg`` and ``.png`` are both accepted whatever the pairs file says.
Paired mode dresses each person in their own garment (first column); unpaired mode uses the second column.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from i2am.data import schema
from i2am.data.correspondence import resize_correspondence
from i2am.data.image_io import image_size, read_labels, read_mask, read_rgb
from i2am.data.layout import FolderSpec, LayoutCheck, check_validation_level

SPLITS = ("train", "test")
MODES = ("paired", "unpaired")

IMAGE = FolderSpec("image")
CLOTH = FolderSpec("cloth")
CLOTH_MASK = FolderSpec("cloth-mask", aliases=("cloth_mask",))
AGNOSTIC_MASK = FolderSpec("agnostic-mask", aliases=("agnostic_mask",), suffix="_mask")

# extra name -> folders it needs (cloth_warp: paired folders; the unpaired ones are swapped in by mode)
EXTRAS: dict[str, tuple[FolderSpec, ...]] = {
    schema.AGNOSTIC: (FolderSpec("agnostic-v3.2", aliases=("agnostic",)),),
    schema.DENSEPOSE: (FolderSpec("image-densepose", aliases=("densepose",)),),
    schema.GT_WARPED_MASK: (FolderSpec("gt_cloth_warped_mask", aliases=("gt-cloth-warped-mask",)),),
    schema.CLOTH_WARP: (FolderSpec("cloth-warp"), FolderSpec("cloth-warp-mask")),
    schema.PARSE: (FolderSpec("image-parse-v3", aliases=("image-parse",)),),
    schema.POSE_KEYPOINTS: (FolderSpec("openpose_json", aliases=("openpose-json",), suffix="_keypoints",
                                       extensions=(".json",)),),
    schema.CORRESPONDENCE: (FolderSpec("correspondence", extensions=(".npy",)),),
}
UNPAIRED_CLOTH_WARP = (FolderSpec("unpaired-cloth-warp"), FolderSpec("unpaired-cloth-warp-mask"))
DEFAULT_EXTRAS = (schema.AGNOSTIC, schema.DENSEPOSE)


@dataclass(frozen=True)
class TryOnSample:
    person: str              # file stems
    garment: str
    files: dict[str, Path]   # batch key (or "<key>_mask") -> resolved file


def read_pairs(path: Path, check: LayoutCheck) -> list[tuple[str, str]]:
    """``<person> <garment>`` per line; blank lines are skipped; bad lines are recorded with their number."""
    if check.file(path) is None:
        return []
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            check.add(f"{path}:{number}: expected '<person> <garment>', got {line!r}")
            continue
        pairs.append((fields[0], fields[1]))
    if not pairs and not check.problems:
        check.add(f"{path} lists no pairs")
    return pairs


class VitonHDDataset(Dataset):
    """Try-on samples in the batch format of ``schema.py``; the whole layout is validated in the constructor.

    split: "train" | "test"; mode: "paired" | "unpaired"; size: (H, W) of every output image (512x384 default);
    extras: optional folders to load (keys of ``EXTRAS``); limit: keep the first N pairs;
    validate: "full" (files, sizes, empty masks), "fast" (files, sizes) or "off" (files only).
    """

    def __init__(self, root: str | Path, split: str = "test", mode: str = "paired",
                 size: tuple[int, int] = (512, 384), extras: tuple[str, ...] = DEFAULT_EXTRAS,
                 limit: int | None = None, validate: str = "full"):
        if split not in SPLITS or mode not in MODES:
            raise ValueError(f"split={split!r}, mode={mode!r}; expected split in {SPLITS}, mode in {MODES}")
        unknown = sorted(set(extras) - set(EXTRAS))
        if unknown:
            raise ValueError(f"unknown VITON-HD extras {unknown}; known: {sorted(EXTRAS)}")
        self.root, self.split, self.mode = Path(root), split, mode
        self.size, self.extras = (int(size[0]), int(size[1])), tuple(extras)
        self.samples = self._index(limit, check_validation_level(validate))

    def _folders(self) -> dict[str, tuple[FolderSpec, str]]:
        """batch key -> (folder spec, "person" | "garment": whose stem names the file)."""
        folders = {schema.IMAGE: (IMAGE, "person"), schema.REFERENCE: (CLOTH, "garment"),
                   schema.REFERENCE_MASK: (CLOTH_MASK, "garment"), schema.INPAINT_MASK: (AGNOSTIC_MASK, "person")}
        for key in self.extras:
            specs = UNPAIRED_CLOTH_WARP if key == schema.CLOTH_WARP and self.mode == "unpaired" else EXTRAS[key]
            folders[key] = (specs[0], "person")
            if key == schema.CLOTH_WARP:
                folders[schema.CLOTH_WARP_MASK] = (specs[1], "person")
        return folders

    def _index(self, limit: int | None, validate: str) -> list[TryOnSample]:
        check = LayoutCheck("VITON-HD", self.root)
        pairs = read_pairs(self.root / f"{self.split}_pairs.txt", check)[:limit]
        persons = [Path(person).stem for person, _ in pairs]
        garments = [Path(person if self.mode == "paired" else garment).stem for person, garment in pairs]
        split_dir = self.root / self.split
        if not split_dir.is_dir():
            check.add(f"missing folder {split_dir}")
        files: dict[str, list[Path | None]] = {}
        ext = Path(pairs[0][0]).suffix if pairs else ""
        for key, (spec, owner) in self._folders().items():
            folder = check.folder(split_dir, spec) if split_dir.is_dir() else None
            files[key] = check.files(folder, spec, persons if owner == "person" else garments, ext)
        samples = [TryOnSample(p, g, {key: paths[i] for key, paths in files.items()})
                   for i, (p, g) in enumerate(zip(persons, garments))]
        if validate != "off":
            for sample in samples:
                self._check_sample(sample, check, validate)
        check.raise_if_any()
        return samples

    @staticmethod
    def _check_sample(sample: TryOnSample, check: LayoutCheck, validate: str) -> None:
        files = sample.files
        for key in (schema.INPAINT_MASK, schema.AGNOSTIC, schema.DENSEPOSE, schema.GT_WARPED_MASK, schema.PARSE,
                    schema.CLOTH_WARP, schema.CLOTH_WARP_MASK):
            check.same_size(files[schema.IMAGE], files.get(key))
        check.same_size(files[schema.REFERENCE], files[schema.REFERENCE_MASK])
        if files.get(schema.CORRESPONDENCE) is not None:
            shape = np.load(files[schema.CORRESPONDENCE], mmap_mode="r").shape
            check.shape_matches(files[schema.IMAGE], files[schema.CORRESPONDENCE], shape)
        if validate == "full":
            check.not_empty(files[schema.REFERENCE_MASK])
            check.not_empty(files[schema.INPAINT_MASK])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample, size = self.samples[index], self.size
        files = sample.files
        item = {schema.SAMPLE_ID: f"{sample.person}__{sample.garment}",
                schema.IMAGE: read_rgb(files[schema.IMAGE], size),
                schema.REFERENCE: read_rgb(files[schema.REFERENCE], size),
                schema.REFERENCE_MASK: read_mask(files[schema.REFERENCE_MASK], size),
                schema.INPAINT_MASK: read_mask(files[schema.INPAINT_MASK], size)}
        readers = {schema.AGNOSTIC: lambda p: read_rgb(p, size),
                   schema.DENSEPOSE: lambda p: read_rgb(p, size, nearest=True),
                   schema.GT_WARPED_MASK: lambda p: read_mask(p, size),
                   schema.CLOTH_WARP: lambda p: read_rgb(p, size),
                   schema.CLOTH_WARP_MASK: lambda p: read_mask(p, size),
                   schema.PARSE: lambda p: read_labels(p, size),
                   schema.POSE_KEYPOINTS: lambda p: read_keypoints(p, image_size(files[schema.IMAGE]), size),
                   schema.CORRESPONDENCE: lambda p: resize_correspondence(
                       np.load(p), size, image_size(files[schema.REFERENCE]), size)}
        for key, reader in readers.items():
            if key in files:
                item[key] = reader(files[key])
        return item


def read_keypoints(path: Path, source_size: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """OpenPose JSON -> [K, 3] (x, y, confidence) of the first person, x/y rescaled to ``size``; zeros if none."""
    people = json.loads(path.read_text()).get("people", [])
    if not people:
        return torch.zeros(18, 3)
    points = torch.tensor(people[0]["pose_keypoints_2d"], dtype=torch.float32).view(-1, 3)
    scale = torch.tensor([size[1] / source_size[1], size[0] / source_size[0], 1.0])
    return points * scale
