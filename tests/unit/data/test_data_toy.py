"""The toy world: determinism, exact ground truth, VITON-HD and COCO layouts."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.tasks_util import ROOT, compose_task
from PIL import Image

from i2am.data.correspondence import warp_reference
from i2am.data.image_io import read_rgb
from i2am.data.toy import write_toy_coco, write_toy_vitonhd
from i2am.data.toy.densepose import PART_CODE_STEP
from i2am.data.toy.garment import random_garment_shape
from i2am.data.toy.location import ToyWorldError
from i2am.data.toy.placement import MARGIN, random_placement
from i2am.data.toy.vitonhd import check_toy_world
from i2am.data.toy.warp import random_warp

SIZE = (128, 96)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The first world (garment_uv): its DensePose-like map is the garment coordinate (a shortcut, kept to compare)."""
    return write_toy_vitonhd(tmp_path_factory.mktemp("toy") / "vitonhd", n_train=3, n_test=3, size=SIZE, seed=0,
                             world="garment_uv")


@pytest.fixture(scope="module")
def surface_toy(tmp_path_factory):
    return write_toy_vitonhd(tmp_path_factory.mktemp("toy") / "surface", n_train=3, n_test=3, size=SIZE, seed=0,
                             world="body_surface")


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_toy_vitonhd_is_byte_identical_for_the_same_arguments(toy, tmp_path):
    again = write_toy_vitonhd(tmp_path / "again", n_train=3, n_test=3, size=SIZE, seed=0, world="garment_uv")
    assert _tree_bytes(toy) == _tree_bytes(again)
    other_seed = write_toy_vitonhd(tmp_path / "other", n_train=3, n_test=3, size=SIZE, seed=1, world="garment_uv")
    assert (other_seed / "train/image/000000_00.png").read_bytes() != (toy / "train/image/000000_00.png").read_bytes()


def test_toy_vitonhd_writes_the_vitonhd_layout(toy):
    for split, names in (("train", ["000000_00", "000001_00", "000002_00"]),
                         ("test", ["000003_00", "000004_00", "000005_00"])):
        for folder, suffix in (("image", ""), ("cloth", ""), ("cloth-mask", ""), ("agnostic-v3.2", ""),
                               ("agnostic-mask", "_mask"), ("image-densepose", ""), ("gt_cloth_warped_mask", ""),
                               ("image-parse-v3", ""), ("cloth-warp", ""), ("unpaired-cloth-warp-mask", "")):
            for name in names:
                assert Image.open(toy / split / folder / f"{name}{suffix}.png").size == (SIZE[1], SIZE[0])
        pairs = [line.split() for line in (toy / f"{split}_pairs.txt").read_text().splitlines()]
        assert [p for p, _ in pairs] == [f"{n}.png" for n in names]
        assert all(p != g for p, g in pairs) and sorted(g for _, g in pairs) == [f"{n}.png" for n in names]


@pytest.mark.parametrize("world", ["toy", "surface_toy"])
def test_correspondence_reproduces_the_person_garment_pixels(world, request):
    """Tolerance: the person PNG is rounded to uint8 after float bilinear sampling, so the warp of the cloth PNG
    with torch.grid_sample (an implementation independent of the writer's scipy one) must match it to within
    rounding: mean absolute error < 0.5/255 and max < 1.5/255 on the [0, 1] scale."""
    toy = request.getfixturevalue(world)
    for name in ("000003_00", "000004_00", "000005_00"):
        corr = torch.from_numpy(np.load(toy / "test/correspondence" / f"{name}.npy")).permute(2, 0, 1)[None]
        cloth = (read_rgb(toy / "test/cloth" / f"{name}.png")[None] + 1) / 2
        person = (read_rgb(toy / "test/image" / f"{name}.png")[None] + 1) / 2
        warped, valid = warp_reference(cloth, corr)
        covered = valid[0, 0].bool()
        assert covered.float().mean() > 0.15  # the garment is a large part of the image
        error = (warped - person)[0][:, covered].abs()
        assert error.mean() < 0.5 / 255 and error.max() < 1.5 / 255
        gt_mask = np.array(Image.open(toy / "test/gt_cloth_warped_mask" / f"{name}.png")) > 127
        assert np.array_equal(gt_mask, covered.numpy())
        # every source pixel lies on the garment (cloth mask)
        cloth_mask = np.array(Image.open(toy / "test/cloth-mask" / f"{name}.png")) > 127
        rows, cols = np.rint(corr[0, :, covered].numpy()).astype(int)
        assert cloth_mask[rows, cols].mean() > 0.97


def test_densepose_map_encodes_the_canonical_garment_coordinates(toy):
    name = "000000_00"
    corr = np.load(toy / "train/correspondence" / f"{name}.npy")
    densepose = np.array(Image.open(toy / "train/image-densepose" / f"{name}.png")).astype(np.float64)
    parse = np.array(Image.open(toy / "train/image-parse-v3" / f"{name}.png"))
    covered = corr[..., 0] >= 0
    u, v = densepose[..., 0] / 255, densepose[..., 1] / 255
    assert np.abs(u[covered] - corr[covered, 1] / (SIZE[1] - 1)).max() <= 0.5 / 255 + 1e-6
    assert np.abs(v[covered] - corr[covered, 0] / (SIZE[0] - 1)).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(densepose[..., 2] == 255, parse != 0)  # body indicator
    assert (densepose[parse == 0] == 0).all()


def test_agnostic_mask_hides_the_garment_and_greys_the_image(toy):
    name = "000001_00"
    mask = np.array(Image.open(toy / "train/agnostic-mask" / f"{name}_mask.png")) > 127
    covered = np.load(toy / "train/correspondence" / f"{name}.npy")[..., 0] >= 0
    agnostic = np.array(Image.open(toy / "train/agnostic-v3.2" / f"{name}.png"))
    image = np.array(Image.open(toy / "train/image" / f"{name}.png"))
    assert mask[covered].all() and mask.sum() > covered.sum()
    assert (agnostic[mask] == 128).all() and np.array_equal(agnostic[~mask], image[~mask])


def test_garment_transform_is_invertible_and_not_affine():
    warp = random_warp(np.random.default_rng(3), SIZE)
    grid = np.stack(np.mgrid[0:SIZE[0], 0:SIZE[1]], axis=-1).astype(np.float64)
    np.testing.assert_allclose(warp.to_person(warp.to_garment(grid)), grid, atol=1e-9)
    garment = warp.to_garment(grid).reshape(-1, 2)
    design = np.concatenate([grid.reshape(-1, 2), np.ones((garment.shape[0], 1))], axis=1)
    affine, *_ = np.linalg.lstsq(design, garment, rcond=None)
    assert np.abs(design @ affine - garment).max() > 1.0  # the bend and the curve are not affine
    assert np.abs(affine[:2] - np.eye(2)).max() > 0.1     # nor a translation


def test_product_placement_is_invertible_not_affine_inside_the_image_and_differs_per_sample():
    shape = random_garment_shape(np.random.default_rng(0), SIZE)
    rows, cols = np.mgrid[0:SIZE[0], 0:SIZE[1]].astype(np.float64)
    body = np.stack([rows[shape.contains(rows, cols)], cols[shape.contains(rows, cols)]], axis=-1)
    design = np.concatenate([body, np.ones((len(body), 1))], axis=1)
    placed = []
    for seed in range(4):
        placement = random_placement(np.random.default_rng(seed), SIZE, shape)
        product = placement.to_product(body)
        np.testing.assert_allclose(placement.to_body(product), body, atol=1e-9)
        assert (product >= np.array(SIZE) * MARGIN - 0.5).all() and (product <= np.array(SIZE) * (1 - MARGIN)).all()
        affine, *_ = np.linalg.lstsq(design, product, rcond=None)
        assert np.abs(design @ affine - product).max() > 4.0   # the bend and the curve: pixels off any affine map
        placed.append(product)
    # the same body point lies at different product-image points in different samples (by several pixels)
    assert min(np.median(np.linalg.norm(a - b, axis=-1)) for i, a in enumerate(placed) for b in placed[i + 1:]) > 5


def test_body_surface_densepose_is_a_body_part_iuv_not_the_garment_coordinate(surface_toy):
    for name in ("000000_00", "000001_00", "000002_00"):
        densepose = np.array(Image.open(surface_toy / "train/image-densepose" / f"{name}.png")).astype(np.float64)
        parse = np.array(Image.open(surface_toy / "train/image-parse-v3" / f"{name}.png"))
        corr = np.load(surface_toy / "train/correspondence" / f"{name}.npy")
        assert (densepose[parse == 0] == 0).all()
        assert set(np.unique(densepose[parse != 0, 0])) <= {PART_CODE_STEP * i for i in range(1, 6)}
        torso = densepose[..., 0] == PART_CODE_STEP
        assert densepose[torso, 1:].min() == 0 and densepose[torso, 1:].max() == 255   # normalised within the part
        covered = corr[..., 0] >= 0
        garment_uv = corr[covered][:, ::-1] / (np.array(SIZE[::-1]) - 1) * 255
        assert np.abs(densepose[covered, 1:] - garment_uv).mean() > 10   # gray levels: not today's shortcut


def test_the_world_version_is_recorded_and_an_unversioned_world_is_the_first_one(toy, surface_toy, tmp_path):
    assert json.loads((surface_toy / "toy_world.json").read_text())["world"] == "body_surface"
    assert write_toy_vitonhd(surface_toy, n_train=3, n_test=3, size=SIZE, seed=0) == surface_toy   # the default
    with pytest.raises(ToyWorldError, match="world: body_surface there, garment_uv asked for"):
        write_toy_vitonhd(surface_toy, n_train=3, n_test=3, size=SIZE, seed=0, world="garment_uv")
    with pytest.raises(ToyWorldError, match=r"world='dense'.*data\.toy\.world.*garment_uv, body_surface"):
        write_toy_vitonhd(tmp_path / "new", n_train=1, n_test=1, size=SIZE, world="dense")
    old = shutil.copytree(toy, tmp_path / "old")   # a world written before there were versions
    meta = json.loads((old / "toy_world.json").read_text())
    del meta["world"]
    (old / "toy_world.json").write_text(json.dumps(meta))
    assert write_toy_vitonhd(old, n_train=3, n_test=3, size=SIZE, seed=0, world="garment_uv") == old
    with pytest.raises(ToyWorldError, match="world: garment_uv there, body_surface asked for"):
        write_toy_vitonhd(old, n_train=3, n_test=3, size=SIZE, seed=0, world="body_surface")
    # arguments without a world (a data config's toy: without world:) mean the default world, body_surface
    assert check_toy_world(surface_toy, {"n_train": 3, "n_test": 3, "size": list(SIZE), "seed": 0})
    with pytest.raises(ToyWorldError, match="world: garment_uv there, body_surface asked for"):
        check_toy_world(old, {"n_train": 3, "n_test": 3, "size": list(SIZE), "seed": 0})


def test_toy_coco_is_deterministic_and_valid_coco(tmp_path):
    from pycocotools.coco import COCO

    first = write_toy_coco(tmp_path / "a", n=12, size=(96, 128), seed=0)
    assert _tree_bytes(first) == _tree_bytes(write_toy_coco(tmp_path / "b", n=12, size=(96, 128), seed=0))
    coco = COCO(str(first / "annotations/instances_val2017.json"))
    assert len(coco.getImgIds()) == 12
    fractions = [a["bbox"][2] * a["bbox"][3] / (96 * 128) for a in coco.dataset["annotations"]]
    assert min(fractions) < 0.1 and max(fractions) > 0.3 and any(0.1 <= f <= 0.3 for f in fractions)
    for annotation in coco.dataset["annotations"]:
        x, y, w, h = annotation["bbox"]
        drawn = coco.annToMask(annotation)
        rows, cols = np.nonzero(drawn)
        assert (cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()) == (x, y, w, h)
    meta = json.loads((first / "annotations/instances_val2017.json").read_text())
    assert {c["name"] for c in meta["categories"]} >= {"disc", "star"}
    assert Image.open(first / "val2017" / meta["images"][0]["file_name"]).size == (128, 96)


def test_the_toy_writer_never_changes_a_world_written_with_other_arguments(toy, tmp_path):
    before = _tree_bytes(toy)
    with pytest.raises(ToyWorldError) as err:
        write_toy_vitonhd(toy, n_train=5, n_test=3, size=SIZE, seed=0, world="garment_uv")
    assert str(toy) in str(err.value) and "n_train: 3 there, 5 asked for" in str(err.value)
    assert "another folder" in str(err.value) and "delete" in str(err.value)
    assert write_toy_vitonhd(toy, n_train=3, n_test=3, size=SIZE, seed=0, world="garment_uv") == toy   # left as is
    assert _tree_bytes(toy) == before


def test_the_toy_writer_refuses_a_folder_that_holds_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's file")
    with pytest.raises(ToyWorldError, match="holds no toy world"):
        write_toy_vitonhd(tmp_path, n_train=1, n_test=1, size=SIZE)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_the_readme_toy_snippet_writes_beside_the_cli_toy_world():
    """Its world has other arguments than the CLI's, so it must not land in the CLI's default toy folder."""
    default = Path(compose_task("attribute", []).data.default_root).resolve()
    for page in ("README.md", "docs/index.md", "docs/data.md"):
        folders = re.findall(r'write_toy_vitonhd\("([^"]+)"', (ROOT / page).read_text())
        assert folders and all(Path(f).resolve() != default for f in folders), (page, folders)
