"""``data=pairs``: one's own images, a reference and a source image per sample, matched by file stem.

```
<root>/reference/<stem>.<ext>        the reference the model is conditioned on (garment, exemplar)   (required)
<root>/source/<stem>.<ext>           the image to edit: person, scene                                  (required)
<root>/mask/<stem>.<ext>             255 = the region to generate; without it, the whole source        (optional)
<root>/reference_mask/<stem>.<ext>   255 = the object in the reference; without it, the whole reference (optional)
<root>/densepose/<stem>.<ext>        DensePose map of the source (try-on models); without it, black    (optional)
```
An optional folder, once there, has an image for every stem. Any size and any of ``IMAGE_EXTENSIONS``; every image
is resized to ``size`` (H, W), masks with the area filter. What the batch carries beyond reference and source is
derived: ``agnostic`` is the source with the mask region set to mid-grey (VITON-HD's agnostic image); a missing
DensePose map is all black (DensePose's background).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from i2am.data import schema
from i2am.data.image_io import IMAGE_EXTENSIONS, read_mask, read_rgb
from i2am.data.layout import LayoutError, check_validation_level

REFERENCE_DIR, SOURCE_DIR, MASK_DIR, REFERENCE_MASK_DIR, DENSEPOSE_DIR = (
    "reference", "source", "mask", "reference_mask", "densepose")
REQUIRED = {schema.REFERENCE: REFERENCE_DIR, schema.IMAGE: SOURCE_DIR}
OPTIONAL = {schema.INPAINT_MASK: MASK_DIR, schema.REFERENCE_MASK: REFERENCE_MASK_DIR,
            schema.DENSEPOSE: DENSEPOSE_DIR}
LAYOUT_HELP = ("data=pairs reads <root>/reference/<stem>.* and <root>/source/<stem>.*, optionally mask/, "
               "reference_mask/ and densepose/ (docs/own_images.md)")


def region_masks(root: Path) -> frozenset[str]:
    """The region masks a pairs folder annotates (``inpaint_mask`` from mask/, ``reference_mask`` from
    reference_mask/); a mask missing here is the whole image in the batch, which IMACS cannot score."""
    return frozenset(key for key in (schema.INPAINT_MASK, schema.REFERENCE_MASK) if (root / OPTIONAL[key]).is_dir())


class PairsError(LayoutError):
    """A ``data=pairs`` folder that cannot be read; one paragraph naming the files at fault and the fix."""

    def __init__(self, root: Path, problems: list[str], fix: str):
        self.problems = list(problems)
        Exception.__init__(self, f"data.root={root}: {'; '.join(problems)}. {fix}")


@dataclass(frozen=True)
class PairSample:
    stem: str
    files: dict[str, Path]   # batch key -> file (optional keys only where the file exists)


def _by_stem(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The images of ``folder`` by stem, and the stems found more than once (``a.jpg`` and ``a.png``)."""
    found: dict[str, Path] = {}
    duplicates = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            if path.stem in found:
                duplicates.append(f"{found[path.stem].name} and {path.name}")
            found[path.stem] = path
    return found, duplicates


def _listing(stems) -> str:
    stems = sorted(stems)
    return ", ".join(stems[:5]) + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")


def index_pairs(root: Path) -> list[PairSample]:
    """Every stem with both a reference and a source; anything else (no such folder, a stem in one folder only, two
    files of one stem) raises :class:`PairsError`."""
    if not root.is_dir():
        raise PairsError(root, ["no such folder"], f"Point data.root at a folder laid out as {LAYOUT_HELP}.")
    missing = [name for name in REQUIRED.values() if not (root / name).is_dir()]
    if missing:
        raise PairsError(root, [f"missing folder {root / name}" for name in missing],
                         f"Create it: {LAYOUT_HELP}.")
    files, problems = {}, []
    for key, name in {**REQUIRED, **OPTIONAL}.items():
        if (root / name).is_dir():
            files[key], duplicates = _by_stem(root / name)
            problems += [f"{root / name} has two images of one stem ({d})" for d in duplicates]
    references, sources = set(files[schema.REFERENCE]), set(files[schema.IMAGE])
    if not references & sources:
        problems.append(f"no stem has both a reference and a source image ({len(references)} in "
                        f"{root / REFERENCE_DIR}, {len(sources)} in {root / SOURCE_DIR})")
    for key, name in {**REQUIRED, **OPTIONAL}.items():
        strays = set(files.get(key, {})) - (sources if key != schema.IMAGE else references)
        if strays:
            other = SOURCE_DIR if key != schema.IMAGE else REFERENCE_DIR
            problems.append(f"{root / name} has images whose stem is not in {root / other}: {_listing(strays)}")
    for key, name in OPTIONAL.items():   # a folder given serves every sample (one batch, one set of keys)
        lacking = (references & sources) - set(files.get(key, (references & sources)))
        if lacking:
            problems.append(f"{root / name} has no image for: {_listing(lacking)}")
    if problems:
        raise PairsError(root, problems, "Name each sample's files with the same stem in every folder "
                                         "(e.g. reference/a.jpg, source/a.png, mask/a.png), or remove the extra files.")
    stems = sorted(references & sources)
    return [PairSample(stem, {key: by_stem[stem] for key, by_stem in files.items() if stem in by_stem})
            for stem in stems]


def check_images(root: Path, samples: list[PairSample], decode: bool) -> None:
    """Every file opens (``decode``: decodes in full; else its header is read) and no mask is empty."""
    problems = []
    for sample in samples:
        for key, path in sample.files.items():
            try:
                with Image.open(path) as image:
                    if decode or key in (schema.INPAINT_MASK, schema.REFERENCE_MASK):
                        image.load()
                    if key in (schema.INPAINT_MASK, schema.REFERENCE_MASK) and image.convert("L").getextrema()[1] < 128:
                        problems.append(f"{path} is an empty mask (no pixel >= 128)")
            except (OSError, SyntaxError, ValueError) as err:
                problems.append(f"{path} cannot be decoded ({type(err).__name__}: {err})")
    if problems:
        raise PairsError(root, problems, "Replace or remove these files (masks: white = the region, black = the rest).")


class PairsDataset(Dataset):
    """Samples in the batch format of ``schema.py``, ``sample_id`` the stem; the folder is checked in the constructor.

    size: (H, W) of every output image; limit: the first N stems (sorted); validate: "full" (every image decoded),
    "fast" (headers read), "off" (files matched only).
    """

    def __init__(self, root: str | Path, size: tuple[int, int] = (512, 384), limit: int | None = None,
                 validate: str = "full"):
        self.root, self.size = Path(root), (int(size[0]), int(size[1]))
        level = check_validation_level(validate)
        self.samples = index_pairs(self.root)[:limit]
        if level != "off":
            check_images(self.root, self.samples, decode=level == "full")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample, size = self.samples[index], self.size
        files = sample.files
        image = read_rgb(files[schema.IMAGE], size)
        whole = torch.ones(1, *size)
        mask = read_mask(files[schema.INPAINT_MASK], size) if schema.INPAINT_MASK in files else whole
        densepose = files.get(schema.DENSEPOSE)
        return {schema.SAMPLE_ID: sample.stem,
                schema.IMAGE: image,
                schema.REFERENCE: read_rgb(files[schema.REFERENCE], size),
                schema.INPAINT_MASK: mask,
                schema.REFERENCE_MASK: (read_mask(files[schema.REFERENCE_MASK], size)
                                        if schema.REFERENCE_MASK in files else whole),
                schema.AGNOSTIC: image * (1.0 - mask),   # 0 is mid-grey in [-1, 1]
                schema.DENSEPOSE: read_rgb(densepose, size, nearest=True) if densepose else -torch.ones(3, *size)}
