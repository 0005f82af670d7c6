"""The VITON-HD table (docs/method.md §4.4): FID, KID, LPIPS, SSIM, IMACS_g, IMACS_r of StableVITON, DCI-VTON, the
custom model and the refined custom model, measured next to the paper's numbers.

    i2am reproduce vitonhd_table [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/vitonhd_table[-toy]/vitonhd_table.{md,csv}

FID and KID come from the unpaired runs (``<model>_unpaired``) when the config has them, else from the paired run
(the toy twin); the rest from the paired runs. Toy runs report random-conv FID/KID (``fid_randconv``), which the table
names in its notes: they are not comparable with the paper's Inception numbers.
"""
from __future__ import annotations

from pathlib import Path

from i2am.report.tables import write_table
from i2am.runs import RunDir

PAPER = {  # docs/method.md §4.4 (blog/poster table)
    "StableVITON": {"FID": 10.6755, "KID": 0.0064, "LPIPS": 0.0817, "SSIM": 0.8634, "IMACS_g": 0.3083,
                    "IMACS_r": 0.3388},
    "DCI-VTON": {"FID": 13.0953, "KID": 0.0334, "LPIPS": 0.0824, "SSIM": 0.8612, "IMACS_g": 0.0785, "IMACS_r": None},
    "Custom": {"FID": 11.6572, "KID": 0.0042, "LPIPS": 0.1020, "SSIM": 0.8396, "IMACS_g": 0.0833, "IMACS_r": 0.0403},
    "Refined custom": {"FID": 11.5420, "KID": 0.0022, "LPIPS": 0.0964, "SSIM": 0.8644, "IMACS_g": 0.2215,
                       "IMACS_r": 0.0948},
}
METHODS = {"stableviton": "StableVITON", "dcivton": "DCI-VTON", "custom": "Custom", "refined": "Refined custom"}
COLUMNS = {"FID": (("fid", "fid_randconv"), "unpaired"), "KID": (("kid", "kid_randconv"), "unpaired"),
           "LPIPS": (("lpips",), "paired"), "SSIM": (("ssim",), "paired"),
           "IMACS_g": (("imacs_g",), "paired"), "IMACS_r": (("imacs_r",), "paired")}


def measured(metrics: dict[str, dict], label: str, keys: tuple[str, ...], split: str
             ) -> tuple[float | None, str | None]:
    source = metrics.get(f"{label}_unpaired") if split == "unpaired" else None
    source = source or metrics[label]
    for key in keys:
        if source.get(key) is not None:
            return float(source[key]), key
    return None, None


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    metrics = {label: RunDir(path).read_metrics() for label, path in runs.items()}
    rows, used = [], set()
    for label, method in METHODS.items():
        if label not in metrics:
            continue
        row = {"method": method}
        for column, (keys, split) in COLUMNS.items():
            value, key = measured(metrics, label, keys, split)
            row[column], row[f"{column} (paper)"] = value, PAPER[method][column]
            used |= {key} if key else set()
        rows.append(row)
    notes = [f"runs: {out}", "paper: docs/method.md §4.4; IMACS_r of single-token DCI-VTON is undefined (–)"]
    if "fid_randconv" in used:
        notes.append("FID/KID here are fid_randconv/kid_randconv: random-conv features on toy data, NOT Inception "
                     "FID/KID; LPIPS needs AlexNet weights and is not computed offline")
    if not any(label.endswith("_unpaired") for label in metrics):
        notes.append("FID/KID from paired outputs (the protocol uses unpaired ones)")
    return write_table(rows, out / "vitonhd_table", title="VITON-HD: quality and IMACS", notes=notes)

