"""Super-resolution data: LR/HR pairs from folders, seeded synthetic degradation of any HR folder, and a toy set.

Every sample is a dict with ``image`` (the HR image, [3, H, W] in [-1, 1]), ``lr`` (the LR image resized to the
output size, [3, H, W] in [0, 1]: PASD feeds its ControlNet [0, 1] images) and ``sample_id`` (the file stem).
HR images are centre-cropped to the output aspect ratio and resized bicubically to ``size``; LR images are
centre-cropped the same way and resized bicubically to ``size`` (PASD multiplies the LR by ``--upscale`` with PIL's
bicubic). Layouts (``scale`` is the SR factor, 4 by default):

- ``paired``: ``hr_dir/<id>.png`` and ``lr_dir/<id>.png`` (StableSR test sets: ``RealSR/test_HR`` + ``test_LR``,
  ``DRealSR/test_HR`` + ``test_LR``); ``hr_template`` / ``lr_template`` map an id to each stem, e.g. "{}x4".
- ``realsr`` (RealSR V3): ``root/<Camera>/Test/<scale>/<id>_HR.png`` next to ``<id>_LR<scale>.png``.
- ``drealsr``: ``root/Test_x<scale>/test_HR/<id>.png`` and ``root/Test_x<scale>/test_LR/<id>.png``.
- ``div2k`` (DIV2K validation): ``root/DIV2K_valid_HR/0801.png`` and ``root/DIV2K_valid_LR_bicubic/X4/0801x4.png``.
- ``synthetic``: ``root/*.png`` HR only; the LR is made by ``degrade`` with a per-sample seed.
- ``toy``: photographs bundled with scikit-image (procedural drawings without it), written once to ``root/HR`` and
  degraded synthetically to ``root/LR`` (a ``paired`` layout on disk).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from i2am.data.image_io import IMAGE_EXTENSIONS

TOY_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


# --------------------------------------------------------------------------- pairs on disk
@dataclass(frozen=True)
class SRPair:
    sample_id: str
    hr: Path
    lr: Path | None  # None: make the LR by synthetic degradation


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"SR data: folder {folder} not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _strip_template(stem: str, template: str) -> str | None:
    prefix, _, suffix = template.partition("{}")
    if stem.startswith(prefix) and stem.endswith(suffix) and len(stem) > len(prefix) + len(suffix):
        return stem[len(prefix): len(stem) - len(suffix)]
    return None


def paired_folders(hr_dir: str | Path, lr_dir: str | Path, hr_template: str = "{}",
                   lr_template: str = "{}") -> list[SRPair]:
    """Pairs whose stems are ``hr_template.format(id)`` in ``hr_dir`` and ``lr_template.format(id)`` in ``lr_dir``."""
    hr_dir, lr_dir = Path(hr_dir), Path(lr_dir)
    lr_by_stem = {p.stem: p for p in _images(lr_dir)}
    pairs = []
    for hr in _images(hr_dir):
        sample_id = _strip_template(hr.stem, hr_template)
        if sample_id is None:
            continue
        lr_stem = lr_template.format(sample_id)
        if lr_stem not in lr_by_stem:
            raise FileNotFoundError(f"SR data: no LR image {lr_dir}/{lr_stem}.* for HR {hr}")
        pairs.append(SRPair(sample_id, hr, lr_by_stem[lr_stem]))
    if not pairs:
        raise FileNotFoundError(f"SR data: no HR image named {hr_template!r} in {hr_dir}")
    return pairs


def realsr_pairs(root: str | Path, scale: int = 4) -> list[SRPair]:
    folders = sorted(Path(root).glob(f"*/Test/{scale}"))
    if not folders:
        raise FileNotFoundError(f"SR data: no RealSR folder {root}/<Camera>/Test/{scale}")
    return [pair for folder in folders for pair in paired_folders(folder, folder, "{}_HR", f"{{}}_LR{scale}")]


def drealsr_pairs(root: str | Path, scale: int = 4) -> list[SRPair]:
    folder = Path(root) / f"Test_x{scale}"
    return paired_folders(folder / "test_HR", folder / "test_LR")


def div2k_pairs(root: str | Path, scale: int = 4) -> list[SRPair]:
    root = Path(root)
    return paired_folders(root / "DIV2K_valid_HR", root / "DIV2K_valid_LR_bicubic" / f"X{scale}", "{}", f"{{}}x{scale}")


def hr_only(hr_dir: str | Path) -> list[SRPair]:
    return [SRPair(p.stem, p, None) for p in _images(Path(hr_dir))]


# --------------------------------------------------------------------------- synthetic degradation
@dataclass(frozen=True)
class DegradationConfig:
    """Ranges of a one-stage blur -> downsample -> noise -> JPEG degradation (a light Real-ESRGAN-style model)."""

    scale: int = 4
    blur_sigma: tuple[float, float] = (0.2, 2.0)
    noise_sigma: tuple[float, float] = (1.0, 15.0)   # on the 0..255 scale
    jpeg_quality: tuple[int, int] = (40, 95)
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Degradation:
    """One drawn degradation."""

    scale: int
    blur_sigma: float
    resize_mode: str
    noise_seed: int
    noise_sigma: float
    jpeg_quality: int


_CV2_RESIZE = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def draw_degradation(config: DegradationConfig, seed: int) -> Degradation:
    """The degradation of one sample, a pure function of ``config`` and ``seed``."""
    rng = np.random.default_rng(seed)
    return Degradation(
        scale=config.scale,
        blur_sigma=float(rng.uniform(*config.blur_sigma)),
        resize_mode=str(rng.choice(config.resize_modes)),
        noise_seed=int(rng.integers(2 ** 31)),
        noise_sigma=float(rng.uniform(*config.noise_sigma)),
        jpeg_quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)),
    )


def degrade(hr: np.ndarray, d: Degradation) -> np.ndarray:
    """HR uint8 [H, W, 3] RGB -> LR uint8 [H // scale, W // scale, 3]: blur, downsample, Gaussian noise, JPEG."""
    image = cv2.GaussianBlur(hr, (0, 0), sigmaX=d.blur_sigma, borderType=cv2.BORDER_REFLECT)
    size = (max(1, hr.shape[1] // d.scale), max(1, hr.shape[0] // d.scale))
    image = cv2.resize(image, size, interpolation=_CV2_RESIZE[d.resize_mode]).astype(np.float32)
    image += np.random.default_rng(d.noise_seed).normal(0.0, d.noise_sigma, image.shape).astype(np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    quality = [cv2.IMWRITE_JPEG_QUALITY, d.jpeg_quality]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), quality)
    if not ok:
        raise RuntimeError("SR data: JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- images
def read_uint8(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"SR data: cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def center_crop_to_aspect(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The largest centred crop of ``image`` with the aspect ratio of ``size`` (H, W)."""
    h, w = image.shape[:2]
    target = size[0] / size[1]
    if h / w > target:
        crop = round(w * target)
        top = (h - crop) // 2
        return image[top: top + crop]
    crop = round(h / target)
    left = (w - crop) // 2
    return image[:, left: left + crop]


def resize_bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(size):
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def to_tensor01(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)


# --------------------------------------------------------------------------- dataset
class SRDataset(Dataset):
    """LR/HR samples at the output ``size`` (H, W). A pair without an LR file is degraded with seed ``seed + index``."""

    def __init__(self, pairs: list[SRPair], size: tuple[int, int] = (512, 512),
                 degradation: DegradationConfig | None = None, seed: int = 0):
        self.pairs = list(pairs)
        self.size = tuple(size)
        self.degradation = degradation or DegradationConfig()
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        hr = resize_bicubic(center_crop_to_aspect(read_uint8(pair.hr), self.size), self.size)
        if pair.lr is None:
            lr = degrade(hr, draw_degradation(self.degradation, self.seed + index))
        else:
            lr = center_crop_to_aspect(read_uint8(pair.lr), self.size)
        return {
            "image": to_tensor01(hr).mul(2.0).sub(1.0),
            "lr": to_tensor01(resize_bicubic(lr, self.size)),
            "sample_id": pair.sample_id,
        }


# --------------------------------------------------------------------------- toy set
def _procedural_photo(index: int, size: int = 256) -> np.ndarray:
    """A drawn stand-in photograph: gradient, shapes and lettering (as the paper's "MAXIM" chip), seeded by index."""
    rng = np.random.default_rng(index)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([np.add.outer(ramp, ramp[::-1]) / 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))],
                     axis=-1)
    image = np.ascontiguousarray(np.roll(image, index, axis=-1).astype(np.uint8))
    for _ in range(6):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = tuple(int(c) for c in rng.integers(size // 8, size - size // 8, 2))
        cv2.circle(image, center, int(rng.integers(size // 16, size // 4)), color, thickness=-1)
    cv2.putText(image, "MAXIM", (size // 10, size // 2), cv2.FONT_HERSHEY_SIMPLEX, size / 160, (255, 255, 255),
                max(1, size // 64), cv2.LINE_AA)
    return image


def toy_photographs(count: int = len(TOY_PHOTOS)) -> dict[str, np.ndarray]:
    """RGB uint8 photographs shipped with scikit-image, or procedural drawings where it is unavailable."""
    try:
        from skimage import data as skdata
        return {name: getattr(skdata, name)()[..., :3] for name in TOY_PHOTOS[:count]}
    except (ImportError, OSError, ValueError):  # scikit-image missing or its data files absent
        return {f"drawing_{i}": _procedural_photo(i) for i in range(count)}


def write_toy_sr(root: str | Path, size: tuple[int, int] = (128, 128), count: int = 4,
                 degradation: DegradationConfig | None = None, seed: int = 0) -> Path:
    """Write ``root/HR/<id>.png`` (centre-cropped, resized to ``size``) and their degraded ``root/LR/<id>.png``."""
    root = Path(root)
    degradation = degradation or DegradationConfig()
    (root / "HR").mkdir(parents=True, exist_ok=True)
    (root / "LR").mkdir(parents=True, exist_ok=True)
    for index, (name, photo) in enumerate(toy_photographs(count).items()):
        hr = resize_bicubic(center_crop_to_aspect(photo, size), size)
        lr = degrade(hr, draw_degradation(degradation, seed + index))
        cv2.imwrite(str(root / "HR" / f"{name}.png"), cv2.cvtColor(hr, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "LR" / f"{name}.png"), cv2.cvtColor(lr, cv2.COLOR_RGB2BGR))
    return root


LAYOUTS = {"realsr": realsr_pairs, "drealsr": drealsr_pairs, "div2k": div2k_pairs}


def build_sr_dataset(layout: str, root: str | Path | None = None, *, hr_dir=None, lr_dir=None, hr_template="{}",
                     lr_template="{}", scale: int = 4, size=(512, 512), degradation: dict | None = None,
                     seed: int = 0, toy_count: int = 4, limit: int | None = None) -> SRDataset:
    """The dataset of one layout (see the module docstring); the Hydra ``_target_`` of ``conf/data/sr_*.yaml``."""
    size = tuple(size)
    degradation = DegradationConfig(**{"scale": scale, **(degradation or {})})
    if layout == "paired":
        pairs = paired_folders(hr_dir, lr_dir, hr_template, lr_template)
    elif layout == "synthetic":
        pairs = hr_only(hr_dir or root)
    elif layout == "toy":
        if not (Path(root) / "HR").is_dir():
            write_toy_sr(root, size, toy_count, degradation, seed)
        pairs = paired_folders(Path(root) / "HR", Path(root) / "LR")
    elif layout in LAYOUTS:
        pairs = LAYOUTS[layout](root, scale)
    else:
        raise ValueError(f"SR data: unknown layout {layout!r}; choose from "
                         f"{['paired', 'synthetic', 'toy', *LAYOUTS]}")
    return SRDataset(pairs[:limit] if limit else pairs, size, degradation, seed)
