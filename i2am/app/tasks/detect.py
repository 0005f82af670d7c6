"""`i2am detect`: unsupervised object detection with PBE's R2G maps on COCO (docs/method.md §5.1).

The attribute loop with the detection evaluator: the COCO detection set is built on first use (the data module
runs the builder on `annotations/instances_val2017.json` + `val2017/`), PBE samples each image under capture, and
each R2G ULAM gives a box (65th percentile, 5x5 open/close, dilate, the contour with the most foreground) scored by
IoU and COCO AP against the ground truth, next to the whole-image, random-box and DAAM baselines.
"""
from __future__ import annotations

from omegaconf import DictConfig

from i2am.app.tasks.attribute import run as attribute


def run(cfg: DictConfig) -> dict:
    return attribute(cfg)
