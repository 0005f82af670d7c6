"""The DAAM comparison (docs/method.md §5.4, §9 item 10): I2AM's R2G ULAM next to the T2I-style DAAM map (softmax over
the reference tokens, summed): (a) StableVITON, all patch embeddings; (b) DCI-VTON, one CLS token, where DAAM is
constant.

    i2am reproduce daam_comparison [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/daam_comparison[-toy]/daam_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

import torch

from i2am.report.run_reader import AttributeRun
from i2am.viz.figures import overlay, save_panel
from i2am.viz.panels import display_maps

LABELS = {"stableviton": "(a) StableVITON, all patch embeddings", "dcivton": "(b) DCI-VTON, CLS embedding only"}


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    views = {label: AttributeRun(path).views() for label, path in runs.items()}
    written = []
    for k in range(min(len(v) for v in views.values())):
        tiles = []
        for label, model_views in views.items():
            view = model_views[k]
            size = view.generated.shape[:2]
            daam = view.maps.daam.ulam[0]
            flat = bool(torch.isclose(daam.max(), daam.min(), rtol=1e-4, atol=1e-8))
            tiles += [(f"{LABELS.get(label, label)}: generated", view.generated),
                      *view.tiles("r2g", "ulam", ["I2AM R2G ULAM"]),
                      ("DAAM" + (" (constant map)" if flat else ""),
                       overlay(view.generated, display_maps(daam[None], size, "r2g")[0]))]
        written.append(save_panel(out / f"daam_{views[next(iter(views))][k].sample_id}.png", tiles, columns=3,
                                  title="I2AM vs DAAM"))
    return written

