"""The VITON-HD loader on the toy world: keys, paired/unpaired garments, resizing, and layout validation."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from i2am.data import schema
from i2am.data.correspondence import warp_reference
from i2am.data.image_io import read_mask, read_rgb
from i2am.data.layout import LayoutError
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset

ALL_EXTRAS = ("agnostic", "densepose", "gt_cloth_warped_mask", "cloth_warp", "image_parse", "correspondence")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_toy_vitonhd(tmp_path_factory.mktemp("toy") / "vitonhd", n_train=2, n_test=3, size=(64, 48), seed=1)


@pytest.fixture
def toy(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "copy")


def _pairs(root, split):
    return [line.split() for line in (root / f"{split}_pairs.txt").read_text().splitlines()]


def test_reads_every_key_in_the_schema_format(pristine):
    dataset = VitonHDDataset(pristine, "test", "paired", size=(64, 48), extras=ALL_EXTRAS)
    assert len(dataset) == 3
    sample = dataset[1]
    assert sample[schema.SAMPLE_ID] == "000003_00__000003_00"
    for key in (schema.IMAGE, schema.REFERENCE, schema.AGNOSTIC, schema.DENSEPOSE, schema.CLOTH_WARP):
        assert sample[key].shape == (3, 64, 48) and sample[key].min() >= -1 and sample[key].max() <= 1
    for key in (schema.INPAINT_MASK, schema.REFERENCE_MASK, schema.GT_WARPED_MASK, schema.CLOTH_WARP_MASK):
        assert sample[key].shape == (1, 64, 48) and set(sample[key].unique().tolist()) == {0.0, 1.0}
    assert sample[schema.PARSE].dtype == torch.int64 and 5 in sample[schema.PARSE].unique()
    assert sample[schema.CORRESPONDENCE].shape == (2, 64, 48)
    assert torch.equal(sample[schema.GT_WARPED_MASK][0].bool(), (sample[schema.CORRESPONDENCE] >= 0).all(0))
    expected = read_rgb(pristine / "test/image/000003_00.png")
    assert torch.equal(sample[schema.IMAGE], expected)


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_modes_pick_the_right_garment(pristine, mode):
    dataset = VitonHDDataset(pristine, "test", mode, size=(64, 48), extras=("cloth_warp",))
    for index, (person, partner) in enumerate(_pairs(pristine, "test")):
        garment = (person if mode == "paired" else partner).removesuffix(".png")
        sample = dataset[index]
        assert sample[schema.SAMPLE_ID] == f"{person.removesuffix('.png')}__{garment}"
        assert torch.equal(sample[schema.REFERENCE], read_rgb(pristine / "test/cloth" / f"{garment}.png"))
        assert torch.equal(sample[schema.REFERENCE_MASK], read_mask(pristine / "test/cloth-mask" / f"{garment}.png"))
        warp_folder = "cloth-warp" if mode == "paired" else "unpaired-cloth-warp"
        warp_file = pristine / "test" / warp_folder / person
        assert torch.equal(sample[schema.CLOTH_WARP], read_rgb(warp_file))
        # the person is always their own photo; the person-side files follow the person
        assert torch.equal(sample[schema.IMAGE], read_rgb(pristine / "test/image" / person))


def test_resizing_keeps_the_correspondence_consistent(pristine):
    small = VitonHDDataset(pristine, "train", size=(32, 24), extras=("correspondence",), limit=1)[0]
    full = np.load(pristine / "train/correspondence/000000_00.npy")
    corr = small[schema.CORRESPONDENCE]
    # output pixel (r, c) samples source pixel (2r + 1, 2c + 1); coordinates map with (x + 0.5) / 2 - 0.5
    source = full[1::2, 1::2]
    covered = source[..., 0] >= 0
    expected = np.where(covered[..., None], (source + 0.5) / 2 - 0.5, -1)
    np.testing.assert_allclose(corr.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    # at half size the garment pattern is resampled, so the warp is close, not exact: far better than chance
    def error(correspondence):
        warped, valid = warp_reference(small[schema.REFERENCE][None], correspondence[None])
        return (((warped - small[schema.IMAGE][None]).abs() * valid).sum() / valid.sum() / 3).item()

    mirrored = torch.where(corr >= 0, torch.stack([corr[0], 23 - corr[1]]), corr)
    assert error(corr) < 0.15 and error(mirrored) > 3 * error(corr)


def test_pairs_with_jpg_names_find_png_files_and_limit_keeps_the_first(toy):
    lines = [f"{p.replace('.png', '.jpg')} {g.replace('.png', '.jpg')}\n" for p, g in _pairs(toy, "test")]
    (toy / "test_pairs.txt").write_text("".join(lines))
    dataset = VitonHDDataset(toy, "test", "unpaired", size=(64, 48), limit=2)
    assert [s.person for s in dataset.samples] == ["000002_00", "000003_00"]


def test_missing_folders_and_files_are_all_listed_with_aliases(toy):
    shutil.rmtree(toy / "test/cloth-mask")
    shutil.rmtree(toy / "test/agnostic-v3.2")
    (toy / "test/image-densepose/000003_00.png").unlink()
    with pytest.raises(LayoutError) as error:
        VitonHDDataset(toy, "test", size=(64, 48), extras=("agnostic", "densepose"))
    message = str(error.value)
    assert f"missing folder {toy / 'test/cloth-mask'} (accepted names: cloth-mask, cloth_mask)" in message
    assert f"missing folder {toy / 'test/agnostic-v3.2'} (accepted names: agnostic-v3.2, agnostic)" in message
    assert f"{toy / 'test/image-densepose'}: 1 file(s) missing" in message and "000003_00" in message
    assert len(error.value.problems) == 3


def test_alias_folder_is_accepted(toy):
    (toy / "test/agnostic-v3.2").rename(toy / "test/agnostic")
    sample = VitonHDDataset(toy, "test", size=(64, 48), extras=("agnostic",))[0]
    assert torch.equal(sample[schema.AGNOSTIC], read_rgb(toy / "test/agnostic/000002_00.png"))


def test_missing_pairs_file_is_named(toy):
    (toy / "train_pairs.txt").unlink()
    with pytest.raises(LayoutError, match=f"missing file {toy / 'train_pairs.txt'}"):
        VitonHDDataset(toy, "train", size=(64, 48))


def test_image_mask_size_mismatch_is_named(toy):
    bad = toy / "test/agnostic-mask/000003_00_mask.png"
    Image.new("L", (40, 60), 255).save(bad)
    with pytest.raises(LayoutError) as error:
        VitonHDDataset(toy, "test", size=(64, 48))
    assert f"size mismatch: {bad} is 60x40 (HxW) but {toy / 'test/image/000003_00.png'} is 64x48" in str(error.value)


def test_empty_mask_is_named_and_fast_validation_skips_the_pixel_check(toy):
    bad = toy / "test/cloth-mask/000004_00.png"
    Image.new("L", (48, 64), 0).save(bad)
    with pytest.raises(LayoutError, match=f"empty mask \\(no pixel >= 128\\): {bad}"):
        VitonHDDataset(toy, "test", size=(64, 48))
    assert len(VitonHDDataset(toy, "test", size=(64, 48), validate="fast")) == 3


def test_openpose_keypoints_are_rescaled(toy):
    folder = toy / "test/openpose_json"
    folder.mkdir()
    for person, _ in _pairs(toy, "test"):
        points = [10.0, 20.0, 0.9] + [0.0] * 51
        (folder / f"{person.removesuffix('.png')}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": points}]}))
    sample = VitonHDDataset(toy, "test", size=(128, 96), extras=("pose_keypoints",))[0]
    assert sample[schema.POSE_KEYPOINTS].shape == (18, 3)
    assert sample[schema.POSE_KEYPOINTS][0].tolist() == pytest.approx([20.0, 40.0, 0.9])


def test_bad_arguments_are_rejected(pristine):
    with pytest.raises(ValueError, match="unknown VITON-HD extras"):
        VitonHDDataset(pristine, extras=("warp",))
    with pytest.raises(ValueError, match="mode='both'"):
        VitonHDDataset(pristine, mode="both")
