"""The COCO detection set: selection rule on a hand-made COCO file, written files, and the reader."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from i2am.data import schema
from i2am.data.coco_detection import CocoDetectionDataset, build_coco_detection_set, select_annotation
from i2am.data.layout import LayoutError
from i2am.data.toy import write_toy_coco

H, W = 64, 128  # image area 8192


def _annotation(ann_id, image_id, bbox, category=1):
    return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": bbox, "area": bbox[2] * bbox[3],
            "iscrowd": 0, "segmentation": [[bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1], bbox[0] + bbox[2],
                                            bbox[1] + bbox[3], bbox[0], bbox[1] + bbox[3]]]}


@pytest.fixture
def coco_root(tmp_path):
    """Image 1: objects at 5 %, 20 %, 40 % (in that order); image 2: 40 %, 25 %, 20 %; image 3: 5 %, 40 %."""
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for image_id in (1, 2, 3):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / f"val2017/{image_id:012d}.jpg")
    five, twenty, forty, twenty_five = [0, 0, 32, 12.8], [10, 8, 64, 25.6], [20, 4, 64, 51.2], [4, 0, 32, 64]
    annotations = [_annotation(1, 1, five), _annotation(2, 1, twenty, 2), _annotation(3, 1, forty),
                   _annotation(4, 2, forty), _annotation(5, 2, twenty_five, 2), _annotation(6, 2, twenty),
                   _annotation(7, 3, five), _annotation(8, 3, forty)]
    coco = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W} for i in (1, 2, 3)],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "cat", "supercategory": "animal"},
                           {"id": 2, "name": "pizza", "supercategory": "food"}]}
    (root / "annotations/instances_val2017.json").write_text(json.dumps(coco))
    return root


def test_select_annotation_takes_the_first_box_in_range():
    area = 100.0
    boxes = [{"bbox": [0, 0, 1, 5]}, {"bbox": [0, 0, 4, 5]}, {"bbox": [0, 0, 2, 5]}]
    assert select_annotation(boxes, area) is boxes[1]                     # 5 %, 20 %, 10 % -> the 20 % one
    assert select_annotation(boxes[2:], area) is boxes[2]                 # 10 % is in (inclusive)
    assert select_annotation([{"bbox": [0, 0, 6, 6]}], area) is None      # 36 %


def test_builder_picks_the_right_object_and_writes_every_file(coco_root, tmp_path):
    out = tmp_path / "set"
    records = build_coco_detection_set(coco_root, out)
    assert [(r["image_id"], r["annotation_id"]) for r in records] == [(1, 2), (2, 5)]
    first = records[0]
    assert first["bbox"] == [10, 8, 64, 25.6] and first["area_fraction"] == pytest.approx(0.2)
    assert first["category_name"] == "pizza" and first["category_id"] == 2
    assert json.loads((out / "records/000000000001.json").read_text()) == first
    assert json.loads((out / "index.json").read_text()) == records
    assert (out / first["image"]).read_bytes() == (coco_root / "val2017/000000000001.jpg").read_bytes()
    mask = np.array(Image.open(out / first["mask"]))
    expected = np.zeros((H, W), np.uint8)
    expected[8:34, 10:74] = 255  # rows floor(8)..ceil(33.6), cols 10..74
    assert np.array_equal(mask, expected)
    image = np.array(Image.open(coco_root / "val2017/000000000001.jpg").convert("RGB"))
    assert np.array_equal(np.array(Image.open(out / first["reference"])), image[8:34, 10:74])


def test_reader_yields_the_box_at_512(coco_root, tmp_path):
    build_coco_detection_set(coco_root, tmp_path / "set")
    dataset = CocoDetectionDataset(tmp_path / "set")
    sample = dataset[1]
    assert sample[schema.SAMPLE_ID] == "000000000002" and sample[schema.CATEGORY] == "pizza"
    assert sample[schema.IMAGE].shape == (3, 512, 512) and sample[schema.REFERENCE].shape == (3, 224, 224)
    assert sample[schema.BBOX].tolist() == pytest.approx([16, 0, 128, 512])  # [4, 0, 32, 64] x (4, 8)
    expected = torch.zeros(1, 512, 512)
    expected[:, :, 16:144] = 1
    assert torch.equal(sample[schema.INPAINT_MASK], expected)
    first = dataset[0]  # [10, 8, 64, 25.6] -> stored pixel box rows 8:34, cols 10:74 -> x (8, 4)
    assert first[schema.BBOX].tolist() == pytest.approx([40, 64, 256, 204.8])
    expected = torch.zeros(1, 512, 512)
    expected[:, 64:272, 40:296] = 1
    assert torch.equal(first[schema.INPAINT_MASK], expected)


def test_builder_lists_every_missing_input_before_writing(coco_root, tmp_path):
    (coco_root / "val2017/000000000001.jpg").unlink()
    (coco_root / "val2017/000000000002.jpg").unlink()
    with pytest.raises(LayoutError) as error:
        build_coco_detection_set(coco_root, tmp_path / "set")
    assert len(error.value.problems) == 2 and "000000000002.jpg" in str(error.value)
    assert not (tmp_path / "set").exists()
    with pytest.raises(LayoutError, match="instances_train2017.json"):
        build_coco_detection_set(coco_root, tmp_path / "set", split="train2017")


def test_reader_reports_an_unbuilt_set_and_empty_masks(coco_root, tmp_path):
    with pytest.raises(LayoutError, match="build it first"):
        CocoDetectionDataset(tmp_path / "nothing")
    records = build_coco_detection_set(coco_root, tmp_path / "set")
    Image.new("L", (W, H), 0).save(tmp_path / "set" / records[0]["mask"])
    with pytest.raises(LayoutError, match="empty mask"):
        CocoDetectionDataset(tmp_path / "set")


def test_builder_runs_unchanged_on_the_toy_coco(tmp_path):
    root = write_toy_coco(tmp_path / "toy", n=10, size=(96, 96), seed=2)
    records = build_coco_detection_set(root, tmp_path / "set")
    assert 0 < len(records) <= 10
    assert all(0.1 <= r["area_fraction"] <= 0.3 for r in records)
    sample = CocoDetectionDataset(tmp_path / "set", size=(96, 96), reference_size=(32, 32))[0]
    x, y, w, h = sample[schema.BBOX].tolist()
    mask = sample[schema.INPAINT_MASK][0]
    assert mask.sum() >= w * h and mask[int(y) + 1, int(x) + 1] == 1
