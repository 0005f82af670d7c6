"""COCOEE and Open Images readers on tiny fake trees in their released layouts."""
import numpy as np
import pytest
import torch
from PIL import Image

from i2am.data import schema
from i2am.data.cocoee import COCOEEDataset
from i2am.data.layout import LayoutError
from i2am.data.open_images import OpenImagesDataset


@pytest.fixture
def cocoee(tmp_path):
    root = tmp_path / "test_bench"
    for folder in ("GT_3500", "Ref_3500", "Mask_bbox_3500"):
        (root / folder).mkdir(parents=True)
    ids = [139, 285]
    np.save(root / "id_list.npy", np.array(ids))
    for i in ids:
        Image.new("RGB", (80, 60), (i % 256, 0, 0)).save(root / f"GT_3500/{i:012d}_GT.png")
        Image.new("RGB", (30, 40), (0, 255, 0)).save(root / f"Ref_3500/{i:012d}_ref.png")
        mask = np.zeros((60, 80), np.uint8)
        mask[6:30, 8:48] = 255
        Image.fromarray(mask).save(root / f"Mask_bbox_3500/{i:012d}_mask.png")
    return root


def test_cocoee_reads_its_layout(cocoee):
    dataset = COCOEEDataset(cocoee.parent, size=(120, 160), reference_size=(32, 32))  # parent of test_bench/
    assert len(dataset) == 2
    sample = dataset[1]
    assert sample[schema.SAMPLE_ID] == "000000000285"
    assert sample[schema.IMAGE].shape == (3, 120, 160) and sample[schema.REFERENCE].shape == (3, 32, 32)
    assert sample[schema.BBOX].tolist() == [16, 12, 80, 48]
    assert sample[schema.INPAINT_MASK].sum() == 80 * 48


def test_cocoee_lists_missing_folder_and_files(cocoee):
    import shutil

    shutil.rmtree(cocoee / "Ref_3500")
    (cocoee / "Mask_bbox_3500/000000000139_mask.png").unlink()
    with pytest.raises(LayoutError) as error:
        COCOEEDataset(cocoee)
    assert f"missing folder {cocoee / 'Ref_3500'}" in str(error.value)
    assert "000000000139_mask" in str(error.value) and len(error.value.problems) == 2


@pytest.fixture
def open_images(tmp_path):
    root = tmp_path / "oi"
    (root / "images/validation").mkdir(parents=True)
    (root / "annotations").mkdir()
    for image_id in ("a1", "b2", "c3"):
        Image.new("RGB", (100, 50), (10, 20, 30)).save(root / f"images/validation/{image_id}.jpg")
    header = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,"
              "IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside")
    rows = ["a1,xclick,/m/cat,1,0.0,0.2,0.0,0.2,0,0,0,0,0",     # 4 %
            "a1,xclick,/m/dog,1,0.1,0.5,0.2,0.7,0,0,0,0,0",     # 20 % -> chosen
            "b2,xclick,/m/cat,1,0.0,0.5,0.0,0.5,0,0,1,0,0",     # 25 % but a group box
            "b2,xclick,/m/cat,1,0.5,1.0,0.5,1.0,0,0,0,0,0",     # 25 % -> chosen
            "c3,xclick,/m/dog,1,0.0,0.9,0.0,0.9,0,0,0,0,0",     # 81 %: c3 has no box in range
            "d4,xclick,/m/dog,1,0.0,0.5,0.0,0.4,0,0,0,0,0"]     # 20 %, image not on disk
    (root / "annotations/validation-annotations-bbox.csv").write_text("\n".join([header, *rows]) + "\n")
    (root / "annotations/class-descriptions-boxable.csv").write_text("/m/cat,Cat\n/m/dog,Dog\n")
    return root


def test_open_images_selects_boxes_and_reports_missing_images(open_images):
    with pytest.raises(LayoutError, match=r"1 image\(s\) listed in .* missing: d4"):
        OpenImagesDataset(open_images)
    dataset = OpenImagesDataset(open_images, size=(64, 128), reference_size=(16, 16), missing_images="skip")
    assert [s.image_id for s in dataset.samples] == ["a1", "b2"]
    sample = dataset[0]
    assert sample[schema.CATEGORY] == "Dog" and sample[schema.SAMPLE_ID] == "a1"
    assert sample[schema.BBOX].tolist() == pytest.approx([12.8, 12.8, 51.2, 32.0])
    expected = torch.zeros(1, 64, 128)
    expected[:, 12:45, 12:64] = 1
    assert torch.equal(sample[schema.INPAINT_MASK], expected)
    assert sample[schema.REFERENCE].shape == (3, 16, 16)


def test_open_images_accepts_official_csv_names_and_names_missing_ones(open_images):
    csv = open_images / "annotations/validation-annotations-bbox.csv"
    csv.rename(open_images / "annotations/oidv6-validation-annotations-bbox.csv")
    assert len(OpenImagesDataset(open_images, missing_images="skip")) == 2
    with pytest.raises(LayoutError, match="train-annotations-bbox.csv .*accepted names"):
        OpenImagesDataset(open_images, split="train")
