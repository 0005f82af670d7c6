"""The stable metric names of a run's metrics.json, and a merge into it through the run folder (``i2am.runs``).

metrics.json is a flat name -> number map plus ``n_samples``; several evaluators of one run add their own names.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from i2am.runs import RunDir

STABLE_NAMES = (
    "imacs_g", "imacs_r",                                     # IMACS (imacs.py)
    "fid", "kid", "kid_std", "ssim", "lpips",                 # quality (quality.py; other backbones get a suffix)
    "det_miou", "det_iou50", "det_ap", "det_ap50",            # detection (detection.py, with det_*_<baseline>)
    "loc_err", "loc_err_centroid", "loc_pointing",            # localisation (localization_evaluator.py)
    "r2g_mass_in_region", "attn_entropy", "attn_max_prob", "loc_err_bbox_baseline",
)


def _number(name: str, value) -> float | int:
    value = value.item() if hasattr(value, "item") else value
    if not isinstance(value, (int, float)):
        raise TypeError(f"metrics.json: {name}={value!r} is not a number")
    return value


def update_metrics_json(run_dir: str | Path, metrics: Mapping[str, float], n_samples: int | None = None) -> Path:
    """Merge ``metrics`` (numbers or 0-d tensors) into ``run_dir/metrics.json``; NaN / inf are written as null."""
    record = {name: _number(name, value) for name, value in metrics.items()}
    if n_samples is not None:
        record["n_samples"] = int(n_samples)
    return RunDir(run_dir).update_metrics(record)
