"""The stable metric names of a run's metrics.json, and a writer that merges into it (DESIGN.md §6).

metrics.json is a flat name -> number map plus ``n_samples``; several evaluators of one run add their own names.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

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
    """Merge ``metrics`` (numbers or 0-d tensors) into ``run_dir/metrics.json``; NaN is written as null."""
    path = Path(run_dir) / "metrics.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    for name, value in metrics.items():
        number = _number(name, value)
        record[name] = None if isinstance(number, float) and math.isnan(number) else number
    if n_samples is not None:
        record["n_samples"] = int(n_samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path
