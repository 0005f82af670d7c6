"""The CLI tasks, registered in one place: name -> (module with ``run(cfg) -> dict``, one-line help)."""
from __future__ import annotations

import importlib

TASKS: dict[str, tuple[str, str]] = {
    "demo": ("i2am.app.tasks.demo", ("the main job on CPU: toy world -> train custom/refined/control -> attribute -> "
                                 "metrics -> correlation -> report.html and the claims table")),
    "attribute": ("i2am.app.tasks.attribute", ("sample a dataset under capture: images, raw maps, per-sample and "
                                               "dataset metrics")),
    "train": ("i2am.app.tasks.train", "train the custom try-on model: MSE ('custom') or + CWG/TV/DCML ('refined')"),
    "evaluate": ("i2am.app.tasks.evaluate", "quality metrics (FID, KID, SSIM, LPIPS) of a finished attribute run"),
    "correlate": ("i2am.app.tasks.correlate", ("Pearson/Spearman of IMACS vs quality across runs, table and "
                                               "scatter plot")),
    "detect": ("i2am.app.tasks.detect", "COCO detection with PBE R2G maps: boxes, IoU, AP and the baselines"),
    "train_toy_kontext": ("i2am.app.tasks.train_toy_kontext", ("train the toy Kontext-style transformer on the toy "
                                                               "world (docs/dit_editors.md)")),
    "evaluate_toy_kontext": ("i2am.app.tasks.evaluate_toy_kontext", ("the toy-world localisation check of a toy "
                                                                     "Kontext model's G2R SRAMs")),
    "report": ("i2am.app.tasks.report", "report.html of finished runs: metrics, per-sample map panels, SRAM grids"),
}


def get_task(name: str):
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name][0])
