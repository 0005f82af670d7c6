"""The toy world: procedurally drawn data with ground truth, written in the real on-disk layouts."""
from i2am.data.toy.coco import write_toy_coco
from i2am.data.toy.vitonhd import write_toy_vitonhd

__all__ = ["write_toy_coco", "write_toy_vitonhd"]
