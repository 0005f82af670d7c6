"""COCOEE, Paint-by-Example's test bench, in its released layout.

```
<root>/id_list.npy                         integer COCO image ids, in evaluation order
<root>/GT_3500/<id:012d>_GT.png            the scene
<root>/Ref_3500/<id:012d>_ref.png          the exemplar (reference) image
<root>/Mask_bbox_3500/<id:012d>_mask.png   255 on the box to generate
```
``root`` may also be the folder that contains ``test_bench/``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from i2am.data import schema
from i2am.data.boxes import mask_to_xywh
from i2am.data.image_io import read_mask, read_rgb
from i2am.data.layout import FolderSpec, LayoutCheck, check_validation_level

GT = FolderSpec("GT_3500", suffix="_GT")
REF = FolderSpec("Ref_3500", suffix="_ref")
MASK = FolderSpec("Mask_bbox_3500", suffix="_mask")


class COCOEEDataset(Dataset):
    """``image``, ``inpaint_mask`` (1 on the box), ``reference``, ``bbox`` (from the mask, in pixels of ``size``)
    and ``sample_id`` (the 12-digit id)."""

    def __init__(self, root: str | Path, size: tuple[int, int] = (512, 512),
                 reference_size: tuple[int, int] = (224, 224), limit: int | None = None, validate: str = "full"):
        root = Path(root)
        self.root = root / "test_bench" if not (root / "id_list.npy").exists() and (root / "test_bench").is_dir() \
            else root
        self.size, self.reference_size = tuple(map(int, size)), tuple(map(int, reference_size))
        check_validation_level(validate)
        check = LayoutCheck("COCOEE", self.root)
        id_file = check.file(self.root / "id_list.npy")
        self.ids = [f"{int(i):012d}" for i in np.load(id_file).ravel()][:limit] if id_file else []
        folders = {key: check.folder(self.root, spec) for key, spec in
                   ((schema.IMAGE, GT), (schema.REFERENCE, REF), (schema.INPAINT_MASK, MASK))}
        specs = {schema.IMAGE: GT, schema.REFERENCE: REF, schema.INPAINT_MASK: MASK}
        files = {key: check.files(folders[key], specs[key], self.ids, ".png") for key in specs}
        self.files = [{key: files[key][i] for key in files} for i in range(len(self.ids))]
        if validate != "off":
            for sample in self.files:
                check.same_size(sample[schema.IMAGE], sample[schema.INPAINT_MASK])
                if validate == "full":
                    check.not_empty(sample[schema.INPAINT_MASK])
        check.raise_if_any()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        files = self.files[index]
        mask = read_mask(files[schema.INPAINT_MASK], self.size)
        return {schema.SAMPLE_ID: self.ids[index],
                schema.IMAGE: read_rgb(files[schema.IMAGE], self.size),
                schema.INPAINT_MASK: mask,
                schema.REFERENCE: read_rgb(files[schema.REFERENCE], self.reference_size),
                schema.BBOX: mask_to_xywh(mask)}
