"""Detection from R2G maps (docs/method.md §5.1): mIoU, share with IoU > 0.5 and COCO box AP, with baselines.

Per sample: the box of the map (``boxes.box_from_map``), the whole image, a seeded random 10-30 % box, and the box of
the DAAM-style key-axis map, each scored by IoU against the ground-truth box. Reported names:

- ``det_miou``, ``det_iou50``: mean IoU and share with IoU > 0.5 of the map's box, over all samples;
- ``det_ap``, ``det_ap50``: class-agnostic COCO box AP@[.5:.95] and AP@.5 (pycocotools), one box per image scored by
  ``boxes.box_contrast_score`` (mean normalised attribution inside the box minus outside);
- ``det_miou_whole_image``, ``det_miou_daam``, ``det_miou_random`` (mean over all samples) and
  ``det_miou_random_official`` (mean over samples with IoU >= 1e-5, as the official script).
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from i2am.data import schema
from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.evaluation.imacs import attribution_from_image_map
from i2am.measures.boxes import box_contrast_score, box_iou, boxes_from_maps, key_axis_map, random_boxes

OFFICIAL_RANDOM_MIN_IOU = 1e-5


def coco_box_ap(pred_boxes: Tensor, scores: Tensor, gt_boxes: Tensor) -> tuple[float, float]:
    """Class-agnostic COCO AP@[.5:.95] and AP@.5 with one ground-truth and one predicted xywh box per image."""
    n = len(gt_boxes)
    if n == 0:
        return float("nan"), float("nan")
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i} for i in range(n)],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": [{"id": i + 1, "image_id": i, "category_id": 1, "bbox": box, "area": box[2] * box[3],
                         "iscrowd": 0} for i, box in enumerate(gt_boxes.tolist())],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        gt.createIndex()
        detections = gt.loadRes([{"image_id": i, "category_id": 1, "bbox": box, "score": score}
                                 for i, (box, score) in enumerate(zip(pred_boxes.tolist(), scores.tolist()))])
        evaluation = COCOeval(gt, detections, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0]), float(evaluation.stats[1])


class DetectionEvaluator(Metric):
    """Detection boxes from attribution maps against ground-truth boxes, with the paper's baselines.

    preset: how to read the incoming map, as in IMACS: ``official`` = P from ``to_image(..., "official")``, the
        attribution being 1 - P (the map the official detection pipeline decodes); ``clean`` = already an attribution.
    percentile, kernel_size, dilate_iterations: ``box_from_map`` (65, 5, 1 in the official script).
    random_seed, random_area, random_aspect: the random-box baseline; each sample's box is seeded by its id.
    """

    full_state_update = False
    BOX_SOURCES = ("map", "whole_image", "random", "daam")

    def __init__(self, preset: str = "official", percentile: float = 65.0, kernel_size: int = 5,
                 dilate_iterations: int = 1, random_seed: int = 0, random_area: Sequence[float] = (0.1, 0.3),
                 random_aspect: Sequence[float] = (0.5, 2.0), **kwargs):
        super().__init__(**kwargs)
        self.preset = preset
        self.box_kwargs = {"percentile": percentile, "kernel_size": kernel_size,
                           "dilate_iterations": dilate_iterations}
        self.random_kwargs = {"seed": random_seed, "area_range": tuple(random_area),
                              "aspect_range": tuple(random_aspect)}
        for source in self.BOX_SOURCES:
            self.add_state(f"iou_{source}", default=[], dist_reduce_fx="cat")
        for name in ("pred_boxes", "gt_boxes", "scores"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("seen", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, image_map: Tensor, gt_boxes: Tensor, sample_ids: Sequence[str] | None = None,
               daam_map: Tensor | None = None) -> None:
        """image_map: [B, H, W] R2G map at image resolution; gt_boxes: [B, 4] xywh pixels in that frame.

        sample_ids: seeds of the random boxes (default: running sample index on this rank).
        daam_map: [B, h, w] key-axis map (``boxes.key_axis_map``); default: the single-token one, constant.
        """
        batch, height, width = image_map.shape
        attribution = attribution_from_image_map(image_map, self.preset)
        gt = gt_boxes.detach().float().cpu().reshape(batch, 4)
        if sample_ids is None:
            sample_ids = list(range(int(self.seen), int(self.seen) + batch))
        if daam_map is None:
            daam_map = key_axis_map(torch.zeros(batch, height * width, 1), (height, width))
        daam_map = F.interpolate(daam_map[:, None].float(), size=(height, width), mode="nearest")[:, 0]

        boxes = {
            "map": boxes_from_maps(attribution, **self.box_kwargs),
            "whole_image": torch.tensor([0.0, 0.0, width, height]).expand(batch, 4),
            "random": random_boxes(sample_ids, height, width, **self.random_kwargs),
            "daam": boxes_from_maps(daam_map, **self.box_kwargs),
        }
        for source, source_boxes in boxes.items():
            getattr(self, f"iou_{source}").append(box_iou(source_boxes, gt).to(self.device))
        scores = torch.stack([box_contrast_score(a, b) for a, b in zip(attribution.cpu(), boxes["map"])])
        self.pred_boxes.append(boxes["map"].to(self.device))
        self.gt_boxes.append(gt.to(self.device))
        self.scores.append(scores.to(self.device))
        self.seen += batch

    def compute(self) -> dict[str, float]:
        ious = {source: dim_zero_cat(getattr(self, f"iou_{source}")).double() for source in self.BOX_SOURCES}
        ap, ap50 = coco_box_ap(dim_zero_cat(self.pred_boxes).cpu(), dim_zero_cat(self.scores).cpu(),
                               dim_zero_cat(self.gt_boxes).cpu())
        random_kept = ious["random"][ious["random"] >= OFFICIAL_RANDOM_MIN_IOU]
        out = {
            "det_miou": ious["map"].mean(),
            "det_iou50": (ious["map"] > 0.5).double().mean(),
            "det_ap": ap,
            "det_ap50": ap50,
            "det_miou_whole_image": ious["whole_image"].mean(),
            "det_miou_random": ious["random"].mean(),
            "det_miou_random_official": random_kept.mean(),
            "det_miou_daam": ious["daam"].mean(),
            "det_iou50_whole_image": (ious["whole_image"] > 0.5).double().mean(),
            "det_iou50_random": (ious["random"] > 0.5).double().mean(),
            "det_n": len(ious["map"]),
        }
        return {name: float(value) for name, value in out.items()}


class BoxDetectionEvaluator(Evaluator):
    """:class:`DetectionEvaluator` on one sample: the box of its rendered R2G map
    against the dataset's box, next to the constant DAAM baseline. Same arguments as DetectionEvaluator."""

    def __init__(self, **kwargs):
        super().__init__()
        self.metric = DetectionEvaluator(**kwargs)

    def update(self, ctx: SampleContext) -> None:
        if "r2g" not in ctx.rendered or schema.BBOX not in ctx.sample:
            raise ValueError("the detection evaluator needs R2G maps and a dataset with boxes (coco_detection)")
        # DAAM's key-axis map summed over the reference tokens is constant by construction (one token: the softmax
        # over one key is 1; several: the per-token maps add up to 1): update's default, the paper's baseline row
        self.metric.update(ctx.rendered["r2g"], ctx.sample[schema.BBOX], sample_ids=list(ctx.sample[schema.SAMPLE_ID]))

    def compute(self) -> dict[str, float]:
        return self.metric.compute()
