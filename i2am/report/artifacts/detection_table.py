"""The detection table (docs/method.md §5.1): mIoU of boxes from PBE's R2G maps on COCO val2017, next to the whole-image
("Overall"), Random_{10~30%} and DAAM baselines and the paper's numbers (supervised detectors: paper numbers only).

    i2am reproduce detection_table [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/detection_table[-toy]/detection_table.{md,csv}
"""
from __future__ import annotations

from pathlib import Path

from i2am.report.tables import write_table
from i2am.runs import RunDir

TASK = "detect"   # its runs are `i2am detect` runs

SUPERVISED = {"Faster-RCNN": (0.3225, 0.2658), "Mask-RCNN": (0.3294, 0.2706), "YOLOv3": (0.2448, 0.1978),
              "MaskFormer": (0.3568, 0.2932), "RTMDet": (0.3228, 0.2516)}   # paper (mIoU_GT, mIoU_gen)
UNSUPERVISED = {"DAAM": ("det_miou_daam", 0.1807), "Overall": ("det_miou_whole_image", 0.1807),
                "Random_{10~30%}": ("det_miou_random_official", 0.2028), "Ours (I2AM)": ("det_miou", 0.2416)}


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    metrics = RunDir(runs["pbe"]).read_metrics()
    rows = [{"method": name, "setting": "supervised, seen (paper only)", "mIoU measured": None,
             "mIoU_GT (paper)": gt, "mIoU_gen (paper)": gen} for name, (gt, gen) in SUPERVISED.items()]
    rows += [{"method": name, "setting": "unsupervised, unseen", "mIoU measured": metrics.get(key),
              "mIoU_GT (paper)": None if name == "Ours (I2AM)" else paper, "mIoU_gen (paper)": paper}
             for name, (key, paper) in UNSUPERVISED.items()]
    notes = [f"run: {runs['pbe']} ({metrics.get('det_n', metrics.get('n_samples'))} images)",
             (f"also measured: IoU>0.5 share {metrics.get('det_iou50')}, COCO AP {metrics.get('det_ap')}, "
             f"AP50 {metrics.get('det_ap50')}"),
             ("paper: docs/method.md §5.1 (values spanning both columns are repeated); the supervised detectors are "
              "not run by i2am")]
    return write_table(rows, out / "detection_table", title="Object detection with PBE (COCO val2017)", notes=notes)

