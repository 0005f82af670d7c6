"""``evaluator=randomization``: the model-parameter randomisation sanity check inside ``i2am attribute``.

On the first ``samples`` samples of the run (the same subset after a restart, as for the faithfulness evaluator) it
writes ``randomization.json`` (every curve, per seed) and ``randomization.png`` (the figure) under the sample's folder.
Every learned part is randomised (``complete_stages``), under ``seeds`` re-initialisation seeds. Numbers, for d in
r2g / g2r and s in spearman / spearman_abs / ssim / hog: ``rand_{d}_{s}_noise`` (two runs of the original model with
different noise: a ceiling), ``rand_{d}_{s}_null_random`` (two fully randomised models against each other) and
``rand_{d}_{s}_null_input`` (the map from the inputs alone, the mask, against the original): the nulls;
``rand_{d}_{s}_cascade_first`` / ``_cascade_final`` (after the first stage / the whole cascade, mean over seeds),
``rand_{d}_{s}_independent_mean``; with ``within_region``, every one of them again within the direction's region only
(``rand_{d}_{s}_region_{level}``: the input maps' masks, the inpainting region for R2G and the reference's garment
for G2R; ``i2am.measures.region_similarity``), and ``randomization_maps.png``: the original and the cascading stages'
maps, whole grid and within the region. The pass rule is stated against the randomised-vs-randomised null:
``rand_{d}_margin`` = null_random Spearman + ``null_margin`` - cascade-final Spearman, and ``rand_{d}_pass`` is 1 when
it is >= 0 (the fully randomised map is no closer to the original than two random models are to each other); without
a second seed the rule falls back to the ceiling (final <= ``pass_fraction`` x the noise level). Over samples the
margin is a paired comparison (``i2am.measures.stats``: n, effect, p, an interval from 10 samples on).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch

from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.evaluation.faithfulness_evaluator import SampleRows, write_json
from i2am.evaluation.randomization import SIMILARITIES, capture_config_from, complete_stages, randomization_curves
from i2am.evaluation.rerun import reruns_this_sample
from i2am.measures.stats import flat, paired
from i2am.viz.faithfulness import randomization_figure, randomization_maps_figure

DIRECTIONS = ("r2g", "g2r")
LEVELS = ("noise", "null_random", "null_input", "cascade_first", "cascade_final", "independent_mean")


def randomization_keys() -> list[str]:
    keys = []
    for d in DIRECTIONS:
        for s in SIMILARITIES:
            keys += [f"rand_{d}_{s}_{k}" for k in LEVELS] + [f"rand_{d}_{s}_region_{k}" for k in LEVELS]
        keys += [f"rand_{d}_margin", f"rand_{d}_pass"]
    return keys


def summarise_randomization(result: dict, pass_fraction: float, null_margin: float = 0.1) -> dict[str, float]:
    out = {}
    for key, reference in result["reference"].items():
        out[f"rand_{key}_noise"] = reference
        for null in ("null_random", "null_input"):
            if key in result.get(null, {}):
                out[f"rand_{key}_{null}"] = result[null][key]
        cascade = result.get("cascading", {}).get(key)
        if cascade:
            out[f"rand_{key}_cascade_first"], out[f"rand_{key}_cascade_final"] = cascade[0], cascade[-1]
        independent = result.get("independent", {}).get(key)
        if independent:
            out[f"rand_{key}_independent_mean"] = sum(independent) / len(independent)
        direction, stat = key.split("_", 1)
        if stat == "spearman" and cascade:
            null = result.get("null_random", {}).get(key)
            if null is not None:
                out[f"rand_{direction}_margin"] = null + null_margin - cascade[-1]
                out[f"rand_{direction}_pass"] = float(out[f"rand_{direction}_margin"] >= 0)
            else:
                out[f"rand_{direction}_pass"] = float(cascade[-1] <= pass_fraction * reference)
    return out


class RandomizationEvaluator(Evaluator):
    """samples: how many samples; modes: "cascading" and/or "independent"; seeds: the re-initialisation seeds (>= 3
    for a null of randomised vs randomised); null_margin: the pass rule's slack over that null; pass_fraction: the
    fallback rule against the two-noise-seed ceiling (one seed only); region_key: the batch key restricting the G2R
    query reduction, as the run's ``g2r_region`` (None = all positions); input_keys: the batch keys of the input-only
    maps per direction (the null_input: the inpaint mask for R2G, the reference's mask for G2R);
    ssim_at_image_size: compare maps upsampled to the image size (as saliency sanity checks do); max_stages: only
    the first N stages from the output side (None = all; a budget knob for large models); test: the paired test;
    within_region: also compare the maps within each direction's ``input_keys`` mask only."""

    marker = "randomization.json"

    def __init__(self, samples: int = 2, modes: Sequence[str] = ("cascading", "independent"),
                 seeds: Sequence[int] = (0, 1, 2), pass_fraction: float = 0.5, null_margin: float = 0.1,
                 region_key: str | None = None, ssim_at_image_size: bool = True, figures: bool = True,
                 max_stages: int | None = None,
                 input_keys: Mapping[str, str] | None = None, test: str = "wilcoxon", seed: int | None = None,
                 within_region: bool = True):
        super().__init__()
        self.within_region = within_region
        self.max_stages, self.test = max_stages, test
        self.seeds = [int(seed)] if seed is not None else [int(s) for s in seeds]
        self.samples, self.modes, self.pass_fraction = int(samples), list(modes), pass_fraction
        self.null_margin = null_margin
        self.input_keys = dict(input_keys) if input_keys is not None else {"r2g": "inpaint_mask",
                                                                           "g2r": "reference_mask"}
        self.region_key, self.ssim_at_image_size, self.figures = region_key, ssim_at_image_size, figures
        self.keys = randomization_keys()
        self.rows = SampleRows()

    def update(self, ctx: SampleContext) -> None:
        if not reruns_this_sample(ctx, "randomization", self.marker, self.samples):
            return
        cfg = capture_config_from(ctx.maps.meta, DIRECTIONS)
        region = ctx.sample.get(self.region_key) if self.region_key else None
        size = tuple(ctx.generated.shape[-2:]) if self.ssim_at_image_size else None
        frames = ctx.maps.r2g.frames if ctx.maps.r2g.available else None
        if size is not None and frames:   # a video's R2G maps are compared as their frames stacked (as_plane)
            size = (size[0] * frames, size[1])
        stages = complete_stages(ctx.adapter)[:self.max_stages]
        input_maps = {d: ctx.sample[k].float().cpu() for d, k in self.input_keys.items()
                      if k and torch.is_tensor(ctx.sample.get(k))}
        result = randomization_curves(ctx.adapter, ctx.sampler, ctx.sample, cfg, stages=stages, modes=self.modes,
                                      seeds=self.seeds, region=region, ssim_size=size, input_maps=input_maps,
                                      regions=input_maps if self.within_region else None)
        maps = result.pop("maps")
        values = summarise_randomization(result, self.pass_fraction, self.null_margin)
        write_json(ctx.sample_dir / self.marker, {"sample_id": ctx.sample_id, **result, "values": values})
        if self.figures and "cascading" in result:
            randomization_figure(ctx.sample_dir / "randomization.png", result["stages"],
                                 {k: v for k, v in result["cascading"].items() if k.endswith(("_spearman", "_ssim"))},
                                 result["reference"], title=f"{ctx.sample_id}: cascading randomisation")
            randomization_maps_figure(ctx.sample_dir / "randomization_maps.png", result["stages"], maps["original"],
                                      maps["cascading"], input_maps if self.within_region else {},
                                      title=f"{ctx.sample_id}: original vs randomised maps (cascading, seed "
                                            f"{self.seeds[0]})")
        self.rows.update(torch.tensor([values.get(k, math.nan) for k in self.keys], dtype=torch.float64))

    def compute(self) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
            rows = self.rows.compute()
        if rows.numel() == 0:
            return {}
        out = {}
        for j, key in enumerate(self.keys):
            column = rows[:, j]
            finite = column[~torch.isnan(column)]
            out[key] = float(finite.mean()) if finite.numel() else math.nan
            if key.endswith("_margin"):
                out.update(flat(key, paired(column.numpy(), test=self.test)))
        out["rand_n_samples"] = float(rows.shape[0])
        return out
