"""``data=pairs``: reference / source / optional masks matched by stem at any size; each mistake in the folder is one
paragraph naming the file and the fix."""
from __future__ import annotations

import pytest
import torch
from helpers.pairs_folders import SIZES, write_pairs
from helpers.paths import REPO
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from i2am.data import schema
from i2am.data.image_io import read_mask, read_rgb
from i2am.data.layout import LayoutError
from i2am.data.pairs import PairsDataset, PairsError


def test_files_are_matched_by_stem_and_resized_to_the_data_size(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=("b", "a"), densepose=True)
    dataset = PairsDataset(root, size=(64, 48))
    assert [s.stem for s in dataset.samples] == ["a", "b"]
    item = dataset[1]
    assert item[schema.SAMPLE_ID] == "b"
    for key in (schema.IMAGE, schema.REFERENCE, schema.AGNOSTIC, schema.DENSEPOSE):
        assert item[key].shape == (3, 64, 48), key
    for key in (schema.INPAINT_MASK, schema.REFERENCE_MASK):
        assert item[key].shape == (1, 64, 48) and set(item[key].unique().tolist()) == {0.0, 1.0}, key
    torch.testing.assert_close(item[schema.IMAGE], read_rgb(root / "source" / "b.png", (64, 48)), rtol=0, atol=0)
    torch.testing.assert_close(item[schema.REFERENCE], read_rgb(root / "reference" / "b.jpg", (64, 48)), rtol=0,
                               atol=0)
    torch.testing.assert_close(item[schema.INPAINT_MASK], read_mask(root / "mask" / "b.png", (64, 48)), rtol=0, atol=0)
    torch.testing.assert_close(item[schema.DENSEPOSE], read_rgb(root / "densepose" / "b.png", (64, 48), nearest=True),
                               rtol=0, atol=0)


def test_the_agnostic_image_is_the_source_with_the_mask_region_grey(tmp_path):
    item = PairsDataset(write_pairs(tmp_path / "pairs"), size=(64, 48))[0]
    mask = item[schema.INPAINT_MASK].bool().expand(3, -1, -1)
    assert 0 < mask.float().mean() < 1
    assert torch.all(item[schema.AGNOSTIC][mask] == 0)                       # mid-grey in [-1, 1]
    assert torch.equal(item[schema.AGNOSTIC][~mask], item[schema.IMAGE][~mask])


def test_without_optional_folders_the_masks_are_whole_and_densepose_is_black(tmp_path):
    item = PairsDataset(write_pairs(tmp_path / "pairs", masks=False), size=(32, 24))[0]
    assert torch.equal(item[schema.INPAINT_MASK], torch.ones(1, 32, 24))
    assert torch.equal(item[schema.REFERENCE_MASK], torch.ones(1, 32, 24))
    assert torch.equal(item[schema.DENSEPOSE], -torch.ones(3, 32, 24))
    assert torch.equal(item[schema.AGNOSTIC], torch.zeros(3, 32, 24))        # the whole source is generated


def test_the_datamodule_is_built_from_the_config(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=("a", "b", "c"))
    cfg = OmegaConf.load(REPO / "conf" / "data" / "pairs.yaml")
    cfg.root, cfg.limit, cfg.batch_size = str(root), 2, 2
    module = instantiate(cfg)
    batch = next(iter(module.predict_dataloader()))
    assert batch[schema.SAMPLE_ID] == ["a", "b"] and batch[schema.IMAGE].shape == (2, 3, *cfg.size)


def _refused(root, *named) -> str:
    with pytest.raises(PairsError) as err:
        PairsDataset(root, size=(32, 24))
    message = str(err.value)
    assert isinstance(err.value, LayoutError) and "\n" not in message, message
    for text in named:
        assert text in message, (text, message)
    return message


def test_a_missing_root_or_folder_is_named_with_the_layout(tmp_path):
    _refused(tmp_path / "nowhere", "nowhere", "no such folder", "reference/<stem>.*")
    root = write_pairs(tmp_path / "pairs")
    for path in (root / "source").iterdir():
        path.unlink()
    (root / "source").rmdir()
    _refused(root, f"missing folder {root / 'source'}", "Create it")


def test_stems_that_do_not_match_are_named(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=("a", "b"))
    (root / "source" / "b.png").rename(root / "source" / "c.png")
    message = _refused(root, f"{root / 'reference'} has images whose stem is not in {root / 'source'}: b",
                       f"{root / 'source'} has images whose stem is not in {root / 'reference'}: c",
                       f"{root / 'mask'} has images whose stem is not in {root / 'source'}: b",
                       "same stem in every folder")
    assert message.startswith(f"data.root={root}: ")


def test_an_optional_folder_serves_every_stem(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=("a", "b"))
    (root / "mask" / "b.png").unlink()
    _refused(root, f"{root / 'mask'} has no image for: b")


def test_two_images_of_one_stem_are_named(tmp_path):
    root = write_pairs(tmp_path / "pairs")
    (root / "reference" / "a.jpg").rename(root / "reference" / "a.png")
    write_pairs(root, stems=("a",), masks=False)   # a.jpg again next to a.png
    _refused(root, f"{root / 'reference'} has two images of one stem (a.jpg and a.png)")


def test_an_undecodable_image_and_an_empty_mask_are_named(tmp_path):
    root = write_pairs(tmp_path / "pairs")
    truncated = root / "reference" / "a.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    (root / "source" / "b.png").write_bytes(b"not an image")
    h, w = SIZES["mask"]
    Image.new("L", (w, h), 0).save(root / "mask" / "a.png")
    _refused(root, f"{truncated} cannot be decoded", f"{root / 'source' / 'b.png'} cannot be decoded",
             f"{root / 'mask' / 'a.png'} is an empty mask", "Replace or remove these files")
