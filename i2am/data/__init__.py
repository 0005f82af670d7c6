"""Datasets in their on-disk formats (VITON-HD, COCO detection set, COCOEE, Open Images) and the toy world.

Every dataset yields the batch of ``i2am.data.schema`` and validates its whole layout in its constructor.
"""
from i2am.data.coco_detection import CocoDetectionDataset, build_coco_detection_set
from i2am.data.cocoee import COCOEEDataset
from i2am.data.layout import LayoutError
from i2am.data.masks import to_model_mask
from i2am.data.open_images import OpenImagesDataset
from i2am.data.vitonhd import VitonHDDataset

__all__ = ["COCOEEDataset", "CocoDetectionDataset", "LayoutError", "OpenImagesDataset", "VitonHDDataset",
           "build_coco_detection_set", "to_model_mask"]
