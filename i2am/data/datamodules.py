"""One Lightning DataModule per dataset, each built from ``conf/data/<name>.yaml`` with ``hydra.utils.instantiate``.

``setup`` builds the dataset, which validates its whole layout before any model exists. The toy worlds can be
written on first use (``auto_write_toy``); they are written to a temporary folder and renamed into place, so a
crashed write never leaves a half-written tree behind.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, Dataset

from i2am.data.coco_detection import INDEX_FILE, CocoDetectionDataset, build_coco_detection_set
from i2am.data.cocoee import COCOEEDataset
from i2am.data.open_images import OpenImagesDataset
from i2am.data.pairs import PairsDataset
from i2am.data.toy import write_toy_coco, write_toy_vitonhd
from i2am.data.toy.location import check_toy_location
from i2am.data.toy.vitonhd import check_toy_world
from i2am.data.vitonhd import DEFAULT_EXTRAS, VitonHDDataset


def _pair(values: Sequence[int]) -> tuple[int, int]:
    return int(values[0]), int(values[1])


def write_atomically(root: Path, writer: Callable[[Path], object]) -> None:
    """Run ``writer(tmp)`` in a sibling temporary folder, then rename it to ``root`` (unless another process won)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        writer(tmp)
        try:
            os.replace(tmp, root)
        except OSError:  # another process (e.g. another DDP rank) renamed its copy first
            if not root.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class DatasetDataModule(L.LightningDataModule):
    """One dataset behind every dataloader: shuffled for ``fit``, in order for validate/test/predict."""

    def __init__(self, batch_size: int = 1, num_workers: int = 0, pin_memory: bool = False):
        super().__init__()
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.dataset: Dataset | None = None

    def build_dataset(self) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.prepare_data()  # no-op when already prepared; lets plain scripts skip the Trainer protocol
            self.dataset = self.build_dataset()

    def _loader(self, shuffle: bool) -> DataLoader:
        if self.dataset is None:
            self.setup()
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(shuffle=False)


class VitonHDDataModule(DatasetDataModule):
    """VITON-HD (or the toy world in its layout). ``toy`` holds ``write_toy_vitonhd`` arguments (n_train, n_test,
    seed); the toy size is ``size``. With ``auto_write_toy`` a missing ``root`` is written as a toy world when it is
    ``default_root`` or ``create`` is set, and is an error otherwise (:func:`check_toy_location`)."""

    def __init__(self, root: str, split: str = "test", mode: str = "paired", size: Sequence[int] = (512, 384),
                 extras: Sequence[str] = DEFAULT_EXTRAS, limit: int | None = None, validate: str = "full",
                 auto_write_toy: bool = False, toy: dict | None = None, batch_size: int = 1, num_workers: int = 0,
                 pin_memory: bool = False, default_root: str | None = None, create: bool = False):
        super().__init__(batch_size, num_workers, pin_memory)
        self.root, self.split, self.mode, self.size = Path(root), split, mode, _pair(size)
        self.extras, self.limit, self.validate = tuple(extras), limit, validate
        self.auto_write_toy, self.toy = auto_write_toy, dict(toy or {})
        self.default_root, self.create = default_root, create

    def prepare_data(self) -> None:
        if not self.auto_write_toy:
            return
        wanted = {"size": list(self.size), **self.toy}
        if not self.root.exists():
            check_toy_location(self.root, self.default_root, self.create)
            write_atomically(self.root, lambda tmp: write_toy_vitonhd(tmp, **wanted))
        check_toy_world(self.root, wanted)

    def build_dataset(self) -> Dataset:
        return VitonHDDataset(self.root, self.split, self.mode, self.size, self.extras, self.limit, self.validate)


class CocoDetectionDataModule(DatasetDataModule):
    """The COCO detection set at ``root``, built from ``coco_root`` on first use when ``build_if_missing``;
    with ``auto_write_toy`` the toy COCO (``toy``: n, size, seed) is written to ``coco_root`` first, each of the two
    only at its default location (``default_root``, ``default_coco_root``) or with ``create``."""

    def __init__(self, root: str, coco_root: str | None = None, coco_split: str = "val2017",
                 area_range: Sequence[float] = (0.1, 0.3), build_if_missing: bool = True,
                 size: Sequence[int] = (512, 512), reference_size: Sequence[int] = (224, 224),
                 limit: int | None = None, validate: str = "full", auto_write_toy: bool = False,
                 toy: dict | None = None, batch_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
                 default_root: str | None = None, default_coco_root: str | None = None, create: bool = False):
        super().__init__(batch_size, num_workers, pin_memory)
        self.root, self.coco_root, self.coco_split = Path(root), Path(coco_root) if coco_root else None, coco_split
        self.defaults = {"data.coco_root": (self.coco_root, default_coco_root), "data.root": (self.root, default_root)}
        self.create = create
        self.area_range, self.build_if_missing = (float(area_range[0]), float(area_range[1])), build_if_missing
        self.size, self.reference_size = _pair(size), _pair(reference_size)
        self.limit, self.validate = limit, validate
        self.auto_write_toy, self.toy = auto_write_toy, dict(toy or {})

    def prepare_data(self) -> None:
        for key, (path, default) in self.defaults.items() if self.auto_write_toy else ():
            if path is not None:
                check_toy_location(path, default, self.create, key)
        if self.auto_write_toy and self.coco_root is not None and not self.coco_root.exists():
            write_atomically(self.coco_root, lambda tmp: write_toy_coco(tmp, **self.toy))
        if self.build_if_missing and self.coco_root is not None and not (self.root / INDEX_FILE).exists():
            write_atomically(self.root, lambda tmp: build_coco_detection_set(self.coco_root, tmp, self.coco_split,
                                                                             self.area_range))

    def build_dataset(self) -> Dataset:
        return CocoDetectionDataset(self.root, self.size, self.reference_size, self.limit, self.validate)


class COCOEEDataModule(DatasetDataModule):
    def __init__(self, root: str, size: Sequence[int] = (512, 512), reference_size: Sequence[int] = (224, 224),
                 limit: int | None = None, validate: str = "full", batch_size: int = 1, num_workers: int = 0,
                 pin_memory: bool = False):
        super().__init__(batch_size, num_workers, pin_memory)
        self.root, self.size, self.reference_size = root, _pair(size), _pair(reference_size)
        self.limit, self.validate = limit, validate

    def build_dataset(self) -> Dataset:
        return COCOEEDataset(self.root, self.size, self.reference_size, self.limit, self.validate)


class OpenImagesDataModule(DatasetDataModule):
    def __init__(self, root: str, split: str = "validation", size: Sequence[int] = (512, 512),
                 reference_size: Sequence[int] = (224, 224), area_range: Sequence[float] = (0.1, 0.3),
                 limit: int | None = None, missing_images: str = "error", batch_size: int = 1, num_workers: int = 0,
                 pin_memory: bool = False):
        super().__init__(batch_size, num_workers, pin_memory)
        self.kwargs = {"root": root, "split": split, "size": _pair(size), "reference_size": _pair(reference_size),
                       "area_range": (float(area_range[0]), float(area_range[1])), "limit": limit,
                       "missing_images": missing_images}

    def build_dataset(self) -> Dataset:
        return OpenImagesDataset(**self.kwargs)


class PairsDataModule(DatasetDataModule):
    """One's own images (``data=pairs``): ``<root>/reference/<stem>.*`` and ``<root>/source/<stem>.*`` matched by
    stem, optional ``mask/``, ``reference_mask/``, ``densepose/`` (``i2am.data.pairs``, docs/own_images.md)."""

    def __init__(self, root: str, size: Sequence[int] = (512, 384), limit: int | None = None, validate: str = "full",
                 batch_size: int = 1, num_workers: int = 0, pin_memory: bool = False):
        super().__init__(batch_size, num_workers, pin_memory)
        self.root, self.size, self.limit, self.validate = Path(root), _pair(size), limit, validate

    def build_dataset(self) -> Dataset:
        return PairsDataset(self.root, self.size, self.limit, self.validate)


class SRDataModule(DatasetDataModule):
    """LR/HR pairs for super-resolution (``i2am.data.sr.build_sr_dataset``: paired folders, synthetic degradation of
    an HR folder, or the toy set of scikit-image photographs written on first use)."""

    def __init__(self, layout: str, batch_size: int = 1, num_workers: int = 0, **dataset_options):
        super().__init__(batch_size, num_workers)
        self.layout = layout
        self.dataset_options = dataset_options

    def build_dataset(self) -> Dataset:
        from i2am.data.sr import build_sr_dataset

        return build_sr_dataset(self.layout, **self.dataset_options)
