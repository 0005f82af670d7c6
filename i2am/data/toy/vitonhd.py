"""``write_toy_vitonhd``: the toy try-on world, written in exactly the VITON-HD layout (plus ``correspondence/``).

Names are ``<index:06d>_00.png`` (train first, then test). Each split's ``<split>_pairs.txt`` lists
``<person> <garment>`` with a *different* garment in the second column (a random cyclic derangement), so both
paired mode (first column twice) and unpaired mode work on both splits. Sample i of a split depends only on
(seed, split, i, world), never on how many samples are written.

Two world versions (``world``, docs/toy_world.md): ``body_surface`` (the default, which the shipped checkpoints were
trained on) places each garment in its product image at a per-sample non-affine ``ProductPlacement`` and writes a
body-part IUV, so only the product image tells each pixel's source; ``garment_uv`` (the first world, kept for
comparison) shows every garment on the body frame's own canvas and writes its (u, v) as the DensePose-like map, so
the person-side inputs alone give each pixel's source.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from i2am.data.image_io import save_png
from i2am.data.toy.garment import draw_garment
from i2am.data.toy.location import ToyWorldError, check_toy_folder
from i2am.data.toy.person import random_person, render_person, warp_garment
from i2am.data.toy.placement import draw_placed_garment

TOY_WORLD_FILE = "toy_world.json"
FORMAT_VERSION = 1
_SPLIT_CODES = {"train": 0, "test": 1}
WORLDS = ("garment_uv", "body_surface")
DEFAULT_WORLD = "body_surface"   # the shipped toy checkpoints' world
UNVERSIONED_WORLD = "garment_uv"   # what a world recorded before there were versions holds


def write_toy_vitonhd(root: str | Path, n_train: int = 64, n_test: int = 16, size: tuple[int, int] = (128, 96),
                      seed: int = 0, world: str = DEFAULT_WORLD) -> Path:
    """Write ``n_train`` + ``n_test`` toy try-on samples of ``size`` (H, W) under ``root``; returns ``root``.

    ``root`` must be missing or empty; one that already holds this very world is returned as it is, and any other
    folder (another toy world, other files) is refused with :class:`ToyWorldError`, never changed. ``world``: one of
    ``WORLDS`` (module docstring)."""
    root, size = Path(root), (int(size[0]), int(size[1]))
    if min(size) < 16 or n_train < 1 or n_test < 1:
        raise ValueError(f"toy VITON-HD needs size >= 16x16 and at least one sample per split; got size={size}, "
                         f"n_train={n_train}, n_test={n_test}")
    if world not in WORLDS:
        raise ToyWorldError(f"toy world version world={world!r} is unknown (CLI: data.toy.world); use one of "
                            f"{', '.join(WORLDS)}.")
    arguments = {"n_train": n_train, "n_test": n_test, "size": list(size), "seed": seed, "world": world}
    if check_toy_world(root, arguments):
        return root
    first = 0
    for split, count in (("train", n_train), ("test", n_test)):
        names = [f"{first + i:06d}_00" for i in range(count)]
        _write_split(root, split, names, size, seed, world)
        first += count
    meta = {"kind": "toy_vitonhd", "format_version": FORMAT_VERSION, **arguments}
    (root / TOY_WORLD_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return root


def check_toy_world(root: Path, arguments: dict) -> bool:
    """Whether ``root`` holds the toy world of ``arguments`` (``write_toy_vitonhd`` names); False when it is missing
    or empty; :class:`ToyWorldError` for any other folder. Without ``world``, in ``arguments`` or in a world recorded
    before there were versions, the default world is meant (and such a recorded world is ``garment_uv``)."""
    wanted = {"kind": "toy_vitonhd", "format_version": FORMAT_VERSION, "world": DEFAULT_WORLD, **arguments}
    if "size" in wanted:
        wanted["size"] = [int(v) for v in wanted["size"]]
    return check_toy_folder(Path(root), TOY_WORLD_FILE, wanted, recorded_defaults={"world": UNVERSIONED_WORLD})


def _draw_garment(seed: int, code: int, i: int, size: tuple[int, int], world: str) -> tuple:
    """(cloth, cloth mask, shape, placement or None) of sample i."""
    rng = np.random.default_rng([seed, code, i, 0])
    if world == "garment_uv":
        return (*draw_garment(rng, size), None)
    return draw_placed_garment(rng, np.random.default_rng([seed, code, i, 3]), size)


def _write_split(root: Path, split: str, names: list[str], size: tuple[int, int], seed: int, world: str) -> None:
    code = _SPLIT_CODES[split]
    garments = [_draw_garment(seed, code, i, size, world) for i in range(len(names))]
    order = np.random.default_rng([seed, code, len(names), 2]).permutation(len(names))
    partner = np.empty(len(names), dtype=np.int64)
    partner[order] = np.roll(order, -1)
    out = root / split
    for i, name in enumerate(names):
        cloth, cloth_mask, shape, placement = garments[i]
        person = render_person(random_person(np.random.default_rng([seed, code, i, 1]), size), size, cloth, shape,
                               placement)
        other_cloth, _, other_shape, other_placement = garments[partner[i]]
        unpaired_warp, unpaired_mask = warp_garment(other_cloth, other_shape, person["garment_coords"],
                                                    other_placement)
        paired_warp = np.where(person["covered"][..., None], person["image"], np.uint8(255))
        files = {
            f"image/{name}.png": person["image"],
            f"cloth/{name}.png": cloth,
            f"cloth-mask/{name}.png": _mask(cloth_mask),
            f"agnostic-v3.2/{name}.png": person["agnostic"],
            f"agnostic-mask/{name}_mask.png": _mask(person["agnostic_mask"]),
            f"image-densepose/{name}.png": person["densepose"],
            f"image-parse-v3/{name}.png": person["parse"],
            f"gt_cloth_warped_mask/{name}.png": _mask(person["covered"]),
            f"cloth-warp/{name}.png": paired_warp,
            f"cloth-warp-mask/{name}.png": _mask(person["covered"]),
            f"unpaired-cloth-warp/{name}.png": unpaired_warp,
            f"unpaired-cloth-warp-mask/{name}.png": _mask(unpaired_mask),
        }
        for relative, array in files.items():
            save_png(array, out / relative)
        (out / "correspondence").mkdir(parents=True, exist_ok=True)
        np.save(out / "correspondence" / f"{name}.npy", person["correspondence"])
    lines = [f"{name}.png {names[partner[i]]}.png\n" for i, name in enumerate(names)]
    (root / f"{split}_pairs.txt").write_text("".join(lines))


def _mask(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.uint8) * 255
