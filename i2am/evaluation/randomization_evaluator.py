"""``evaluator=randomization``: the model-parameter randomisation sanity check inside ``i2am attribute``.

On the first ``samples`` samples of the run (the same subset after a restart, as for the faithfulness evaluator) it
writes ``randomization.json`` (every curve) and ``randomization.png`` (the figure) under the sample's folder.
Numbers, for d in r2g / g2r and s in spearman / ssim: ``rand_{d}_{s}_noise`` (two runs of the original model with
different noise: the reference level), ``rand_{d}_{s}_cascade_first`` / ``_cascade_final`` (after the first stage /
the whole cascade), ``rand_{d}_{s}_independent_mean``; ``rand_{d}_pass`` is 1 when the fully randomised map's
Spearman is at most ``pass_fraction`` times the reference level (the check passes), else 0.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.evaluation.faithfulness_evaluator import SampleRows, summarise_rows, write_json
from i2am.evaluation.randomization import adapter_stages, capture_config_from, randomization_curves
from i2am.evaluation.rerun import reruns_this_sample
from i2am.viz.faithfulness import randomization_figure

DIRECTIONS = ("r2g", "g2r")
STATS = ("spearman", "ssim")


def randomization_keys() -> list[str]:
    keys = []
    for d in DIRECTIONS:
        for s in STATS:
            keys += [f"rand_{d}_{s}_{k}" for k in ("noise", "cascade_first", "cascade_final", "independent_mean")]
        keys.append(f"rand_{d}_pass")
    return keys


def summarise_randomization(result: dict, pass_fraction: float) -> dict[str, float]:
    out = {}
    for key, reference in result["reference"].items():
        out[f"rand_{key}_noise"] = reference
        cascade = result.get("cascading", {}).get(key)
        if cascade:
            out[f"rand_{key}_cascade_first"], out[f"rand_{key}_cascade_final"] = cascade[0], cascade[-1]
        independent = result.get("independent", {}).get(key)
        if independent:
            out[f"rand_{key}_independent_mean"] = sum(independent) / len(independent)
        direction, stat = key.split("_")
        if stat == "spearman" and cascade:
            out[f"rand_{direction}_pass"] = float(cascade[-1] <= pass_fraction * reference)
    return out


class RandomizationEvaluator(Evaluator):
    """samples: how many samples; modes: "cascading" and/or "independent"; seed: the re-initialisation seed;
    pass_fraction: the check passes when the fully randomised Spearman is at most this share of the two-noise-seed
    level; region_key: the batch key restricting the G2R query reduction, as the run's ``g2r_region`` (None = all
    positions); ssim_at_image_size: compare maps upsampled to the image size (as saliency sanity checks do);
    max_stages: only the first N stages from the output side (None = all; a budget knob for large models)."""

    marker = "randomization.json"

    def __init__(self, samples: int = 2, modes: Sequence[str] = ("cascading", "independent"), seed: int = 0,
                 pass_fraction: float = 0.5, region_key: str | None = None, ssim_at_image_size: bool = True,
                 figures: bool = True, max_stages: int | None = None):
        super().__init__()
        self.max_stages = max_stages
        self.samples, self.modes, self.seed, self.pass_fraction = int(samples), list(modes), seed, pass_fraction
        self.region_key, self.ssim_at_image_size, self.figures = region_key, ssim_at_image_size, figures
        self.keys = randomization_keys()
        self.rows = SampleRows()

    def update(self, ctx: SampleContext) -> None:
        if not reruns_this_sample(ctx, "randomization", self.marker, self.samples):
            return
        cfg = capture_config_from(ctx.maps.meta, DIRECTIONS)
        region = ctx.sample.get(self.region_key) if self.region_key else None
        size = tuple(ctx.generated.shape[-2:]) if self.ssim_at_image_size else None
        stages = adapter_stages(ctx.adapter)[:self.max_stages]
        result = randomization_curves(ctx.adapter, ctx.sampler, ctx.sample, cfg, stages=stages, modes=self.modes,
                                      seed=self.seed, region=region, ssim_size=size)
        values = summarise_randomization(result, self.pass_fraction)
        write_json(ctx.sample_dir / self.marker, {"sample_id": ctx.sample_id, **result, "values": values})
        if self.figures and "cascading" in result:
            randomization_figure(ctx.sample_dir / "randomization.png", result["stages"], result["cascading"],
                                 result["reference"], title=f"{ctx.sample_id}: cascading randomisation")
        self.rows.update(torch.tensor([values.get(k, math.nan) for k in self.keys], dtype=torch.float64))

    def compute(self) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
            rows = self.rows.compute()
        return summarise_rows(self.keys, rows, 0, 0.95, 0, "rand")
