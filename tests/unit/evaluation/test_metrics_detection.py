"""Detection boxes from maps (docs/method.md §5.1): hand-made blobs, IoU by hand, baselines, COCO AP."""
import pytest
import torch

from i2am.evaluation.detection import DetectionEvaluator, coco_box_ap
from i2am.measures.boxes import box_from_map, box_iou, key_axis_map, random_boxes


def blob_map(height=64, width=64, box=(20, 10, 20, 10)):
    x, y, w, h = box
    image_map = torch.zeros(height, width)
    image_map[y:y + h, x:x + w] = 1.0
    return image_map


def test_blob_gives_its_own_box_without_dilation():
    assert box_from_map(blob_map(), dilate_iterations=0) == (20, 10, 20, 10)


def test_official_dilation_grows_the_box_by_two_pixels_per_side():
    box = box_from_map(blob_map())  # 5x5 dilation once
    assert box == (18, 8, 24, 14)
    iou = box_iou(torch.tensor(box, dtype=torch.float32), torch.tensor([20.0, 10, 20, 10]))
    assert iou.item() == pytest.approx(200 / 336)


def test_the_contour_holding_most_foreground_wins():
    image_map = blob_map() + blob_map(box=(50, 50, 8, 8))
    assert box_from_map(image_map, dilate_iterations=0) == (20, 10, 20, 10)


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    b = torch.tensor([[5.0, 5, 10, 10], [20, 20, 5, 5]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([25 / 175, 0.0]))


def test_single_token_key_axis_map_is_constant_and_gives_the_whole_image():
    daam = key_axis_map(torch.randn(2, 32 * 24, 1), (32, 24))
    torch.testing.assert_close(daam, torch.ones(2, 32, 24))
    assert box_from_map(daam[0]) == (0, 0, 24, 32)
    # many tokens: the key-axis softmax summed over keys is constant as well
    torch.testing.assert_close(key_axis_map(torch.randn(1, 12, 5), (3, 4)), torch.ones(1, 3, 4))


def test_random_boxes_follow_the_official_ranges_and_do_not_depend_on_batching():
    boxes = random_boxes(list(range(200)), 100, 80, seed=3)
    area = boxes[:, 2] * boxes[:, 3] / (100 * 80)
    assert (area <= 0.3).all() and (area >= 0.08).all()  # int() truncation takes a little off 0.1
    assert (boxes[:, 0] + boxes[:, 2] <= 80).all() and (boxes[:, 1] + boxes[:, 3] <= 100).all()
    torch.testing.assert_close(random_boxes([5, 6], 100, 80, seed=3), boxes[5:7])
    assert not torch.equal(random_boxes([5], 100, 80, seed=4), boxes[5:6])


def test_coco_ap_follows_the_scores():
    gt = torch.tensor([[10.0, 10, 20, 20], [30, 30, 10, 10]])
    pred = torch.tensor([[10.0, 10, 20, 20], [0, 0, 5, 5]])  # one hit, one miss
    ap, ap50 = coco_box_ap(pred, torch.tensor([0.9, 0.1]), gt)
    assert ap50 == pytest.approx(51 / 101, abs=1e-6)  # precision 1 up to recall 0.5 on the 101-point grid
    assert ap == pytest.approx(51 / 101, abs=1e-6)
    ap, ap50 = coco_box_ap(pred, torch.tensor([0.1, 0.9]), gt)  # the miss ranked first
    assert ap50 == pytest.approx(0.5 * 51 / 101, abs=1e-6)


def test_evaluator_on_perfect_blob_maps_and_its_baselines():
    gts = torch.tensor([[20.0, 10, 20, 10], [5, 5, 30, 12], [40, 30, 16, 20]])
    maps = torch.stack([blob_map(box=tuple(int(v) for v in box)) for box in gts])
    evaluator = DetectionEvaluator(preset="official", dilate_iterations=0)
    evaluator.update(1 - maps[:2], gts[:2], sample_ids=["a", "b"])  # official P: the attribution is 1 - P
    evaluator.update(1 - maps[2:], gts[2:], sample_ids=["c"])
    result = evaluator.compute()
    assert result["det_miou"] == pytest.approx(1.0)
    assert result["det_iou50"] == pytest.approx(1.0)
    assert result["det_ap"] == pytest.approx(1.0)
    area_share = (gts[:, 2] * gts[:, 3] / (64 * 64)).double().mean().item()
    assert result["det_miou_whole_image"] == pytest.approx(area_share)
    assert result["det_miou_daam"] == pytest.approx(area_share)  # one token: DAAM = whole image
    random_iou = box_iou(random_boxes(["a", "b", "c"], 64, 64, seed=0), gts).double()
    assert result["det_miou_random"] == pytest.approx(random_iou.mean().item())
    kept = random_iou[random_iou >= 1e-5]
    assert result["det_miou_random_official"] == pytest.approx(kept.mean().item())
    assert result["det_n"] == 3
