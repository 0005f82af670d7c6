"""The detection table (docs/method.md §5.1): mIoU of boxes from PBE's R2G maps on COCO val2017, next to the whole-image
("Overall"), Random_{10~30%} and DAAM baselines and the paper's numbers (supervised detectors: paper numbers only).

    python experiments/detection_table.py [--toy] [--make-only] [hydra overrides]  # = i2am reproduce detection_table
"""
from i2am.app.reproduce import main

if __name__ == "__main__":
    main(name="detection_table")
