"""Layout validation: find every missing folder or file, size mismatch and empty mask, then fail once.

Datasets run their whole check in the constructor, before any sample is read and before any model is built, and
raise one :class:`LayoutError` that names every path at fault, so nothing is ever half-loaded.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from i2am.data.image_io import IMAGE_EXTENSIONS, image_size, mask_is_empty
from i2am.errors import UserError

VALIDATION_LEVELS = ("full", "fast", "off")  # full: files, sizes, empty masks; fast: files and sizes; off: files


class LayoutError(UserError, ValueError):
    """A dataset tree does not have the expected layout; ``problems`` lists each fault, one line per path."""

    def __init__(self, what: str, root: Path, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{what} layout under {root} has {len(self.problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class FolderSpec:
    """A folder of per-sample files: ``<stem><suffix>.<ext>``; ``aliases`` are other accepted folder names."""

    name: str
    aliases: tuple[str, ...] = ()
    suffix: str = ""
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class FileIndex:
    """The files of one folder, listed once and looked up by stem (extension-agnostic)."""

    def __init__(self, folder: Path, extensions: tuple[str, ...]):
        self.folder = folder
        self._by_stem: dict[str, list[str]] = defaultdict(list)
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() in extensions:
                self._by_stem[stem].append(name)

    def find(self, stem: str, preferred_ext: str = "") -> Path | None:
        names = self._by_stem.get(stem)
        if not names:
            return None
        preferred = [n for n in names if preferred_ext and n.lower().endswith(preferred_ext.lower())]
        return self.folder / (preferred or names)[0]


class LayoutCheck:
    """Collects layout problems; :meth:`raise_if_any` raises them all together."""

    def __init__(self, what: str, root: Path):
        self.what, self.root = what, Path(root)
        self.problems: list[str] = []
        self._sizes: dict[Path, tuple[int, int]] = {}

    def size(self, path: Path) -> tuple[int, int]:
        """(H, W) of an image file, read from its header once per check."""
        if path not in self._sizes:
            self._sizes[path] = image_size(path)
        return self._sizes[path]

    def folder(self, parent: Path, spec: FolderSpec) -> Path | None:
        """The first accepted folder that exists under ``parent``; records a problem when none does."""
        for name in spec.accepted:
            if (parent / name).is_dir():
                return parent / name
        accepted = f" (accepted names: {', '.join(spec.accepted)})" if spec.aliases else ""
        self.problems.append(f"missing folder {parent / spec.name}{accepted}")
        return None

    def file(self, path: Path, accepted: tuple[str, ...] = ()) -> Path | None:
        """The first of ``path`` and its accepted alternatives that exists; records a problem when none does."""
        for candidate in (path, *(path.parent / name for name in accepted)):
            if candidate.is_file():
                return candidate
        also = f" (accepted names: {', '.join((path.name, *accepted))})" if accepted else ""
        self.problems.append(f"missing file {path}{also}")
        return None

    def files(self, folder: Path | None, spec: FolderSpec, stems: list[str], preferred_ext: str = ""
              ) -> list[Path | None]:
        """Look up ``<stem><suffix>`` for every stem; all missing ones are recorded in one line."""
        if folder is None:
            return [None] * len(stems)
        index = FileIndex(folder, spec.extensions)
        paths = [index.find(stem + spec.suffix, preferred_ext) for stem in stems]
        missing = [stem + spec.suffix for stem, path in zip(stems, paths) if path is None]
        if missing:
            self.problems.append(f"{folder}: {len(missing)} file(s) missing (as {'/'.join(spec.extensions)}): "
                                 + ", ".join(missing))
        return paths

    def same_size(self, reference: Path | None, other: Path | None) -> None:
        if reference is None or other is None:
            return
        ref_size, other_size = self.size(reference), self.size(other)
        if ref_size != other_size:
            self.problems.append(f"size mismatch: {other} is {other_size[0]}x{other_size[1]} (HxW) but "
                                 f"{reference} is {ref_size[0]}x{ref_size[1]}")

    def shape_matches(self, reference: Path | None, other: Path | None, shape: tuple[int, ...] | None) -> None:
        """For non-image files (e.g. .npy): ``shape[:2]`` must equal the reference image's (H, W)."""
        if reference is None or other is None or shape is None:
            return
        height, width = self.size(reference)
        if tuple(shape[:2]) != (height, width):
            self.problems.append(f"size mismatch: {other} has shape {tuple(shape)} but {reference} is "
                                 f"{height}x{width} (HxW)")

    def not_empty(self, mask: Path | None) -> None:
        if mask is not None and mask_is_empty(mask):
            self.problems.append(f"empty mask (no pixel >= 128): {mask}")

    def add(self, problem: str) -> None:
        self.problems.append(problem)

    def raise_if_any(self) -> None:
        if self.problems:
            raise LayoutError(self.what, self.root, self.problems)


def check_validation_level(validate: str) -> str:
    if validate not in VALIDATION_LEVELS:
        raise ValueError(f"validate={validate!r}; expected one of {VALIDATION_LEVELS}")
    return validate
