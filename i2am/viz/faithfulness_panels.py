"""Report panels of the faithfulness and randomisation checks of one run: the deletion / insertion curves
(attribution vs random vs inverse order, averaged over the evaluated samples) and the cascading randomisation curve
with its two-noise-seed level. Read from the per-sample ``faithfulness.json`` / ``randomization.json`` files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from i2am.measures.curves import retained
from i2am.runs import RunDir
from i2am.viz.faithfulness import curves_figure, randomization_figure


def _records(run_dir: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in RunDir(run_dir).sample_files(name)]


def mean_curves(records: list[dict]) -> tuple[list[float], dict] | None:
    """The samples' retained-output curves averaged per mode, space, curve and order, in the raw-curve layout that
    ``curves_figure`` reads (change = 1 - mean retained, all-removed change = 1)."""
    g2r = [r["g2r"] for r in records if "g2r" in r]
    if not g2r:
        return None
    out: dict = {}
    for mode, spaces in g2r[0]["curves"].items():
        for space, curves in spaces.items():
            target = out.setdefault(mode, {}).setdefault(space, {"all_removed": 1.0})
            for name in ("deletion", "insertion"):
                target[name] = {}
                for order in curves[name]:
                    kept = [retained(torch.tensor(r["curves"][mode][space][name][order]),
                                     torch.tensor(r["curves"][mode][space]["all_removed"])).numpy() for r in g2r]
                    target[name][order] = (1.0 - np.nanmean(kept, axis=0)).tolist()
    return g2r[0]["fractions"], out


def faithfulness_panels(run_dir: str | Path, out_dir: str | Path, label: str) -> list[tuple[str, Path]]:
    """Figures of the run's checks under ``out_dir`` (none when the run has no faithfulness / randomisation
    evaluator output)."""
    out_dir, items = Path(out_dir), []
    faith = _records(Path(run_dir), "faithfulness.json")
    averaged = mean_curves(faith)
    if averaged is not None:
        fractions, curves = averaged
        path = curves_figure(out_dir / "faithfulness_curves.png", fractions, curves, space="pixel",
                             title=f"{label}: G2R deletion / insertion, mean of {len(faith)} samples")
        items.append((f"{label}: G2R deletion and insertion curves (pixels; higher = more output retained)", path))
    rand = [r for r in _records(Path(run_dir), "randomization.json") if "cascading" in r]
    if rand:
        keys = list(rand[0]["cascading"])
        similarity = {k: np.mean([r["cascading"][k] for r in rand], axis=0).tolist() for k in keys}
        reference = {k: float(np.mean([r["reference"][k] for r in rand])) for k in rand[0]["reference"]}
        path = randomization_figure(out_dir / "randomization_curve.png", rand[0]["stages"], similarity, reference,
                                    title=f"{label}: cascading randomisation, mean of {len(rand)} samples")
        items.append((f"{label}: model-parameter randomisation (dashed: two noise seeds)", path))
    return items
