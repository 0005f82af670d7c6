"""Localisation evaluator over a dataset (toy world only: needs ``correspondence``), and the verdict helper.

Reported names (p = "" for the model; "_chance_baseline": seeded random maps, averaged over ``chance_draws`` maps
per query, the chance (uniform) level; "_centre_prior": a point at the reference's centre; "_bbox_baseline": the
bounding-box mapping): ``loc_err{p}`` (argmax error / reference diagonal), ``loc_err_centroid{p}``,
``loc_pointing{p}`` (argmax within the first radius), ``loc_pointing_r{r}{p}``, ``attn_entropy{p}`` (nats),
``attn_max_prob{p}``; ``attn_entropy_uniform`` (log of the reference cells: a flat map's entropy);
``r2g_mass_in_region`` and ``r2g_mass_in_region_uniform_baseline`` (the garment's area share); ``loc_n_queries``;
per baseline b, the paired per-sample comparison ``loc_gain{b}`` (the baseline's mean argmax error minus the map's,
per sample: n, effect, p, an interval from 10 samples on; ``i2am.measures.stats.flat``); ``loc_localizes`` (0/1, see
``localization_verdict``) with the thresholds it used, ``loc_bbox_tolerance`` and ``loc_chance_margin``.

Renamed (older runs and dashboards): ``*_uniform_baseline`` of the loc_ / attn_ numbers was the flat map, whose
tied maxima average to the centre: it is ``*_centre_prior`` now; ``*_random_baseline`` (one random map) is
``*_chance_baseline`` (the mean over several); ``attn_entropy_uniform_baseline`` is ``attn_entropy_uniform``;
``loc_uniform_margin`` / ``uniform_margin`` is ``loc_chance_margin`` / ``chance_margin``.

:class:`SramLocalizationEvaluator` is the attribution loop's evaluator: it reads the run's SRAM layer from the maps.
"""
from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from i2am.data import schema
from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.measures.localization import (
    bbox_mapping_sources,
    centre_prior_maps,
    grid_cells,
    localization_stats,
    mass_in_region,
    normalise_distribution,
    point_maps,
    pool_to_grid,
    random_maps,
    true_source_cells,
)
from i2am.measures.stats import flat, paired

CANDIDATES = ("", "_chance_baseline", "_centre_prior", "_bbox_baseline")
BASELINES = CANDIDATES[1:]


@dataclass(frozen=True)
class LocalizationVerdict:
    localizes: bool
    reason: str


def localization_verdict(metrics: Mapping[str, float], bbox_tolerance: float = 0.05,
                         chance_margin: float = 0.5) -> LocalizationVerdict:
    """A model localises only if its argmax error comes close to the bounding-box mapping (at most ``bbox_tolerance``
    of the reference diagonal above it, or below it), clearly beats chance, the random maps (at most
    ``(1 - chance_margin)`` times their error), AND beats the centre prior. Chance alone is too weak a bar
    (docs/toy_world.md), and a map that only points at the centre is the centre prior.
    """
    err, bbox, chance, centre = (metrics[k] for k in ("loc_err", "loc_err_bbox_baseline", "loc_err_chance_baseline",
                                                       "loc_err_centre_prior"))
    close_to_bbox = err <= bbox + bbox_tolerance
    beats_chance = err <= (1 - chance_margin) * chance
    reason = (f"argmax error {err:.3f} vs bounding-box mapping {bbox:.3f} (tolerance +{bbox_tolerance}), chance "
              f"(random maps) {chance:.3f} (needs <= {(1 - chance_margin) * chance:.3f}) and centre prior "
              f"{centre:.3f} (needs <); attention entropy {metrics.get('attn_entropy', math.nan):.2f} nats (uniform "
              f"{metrics.get('attn_entropy_uniform', math.nan):.2f}), max probability "
              f"{metrics.get('attn_max_prob', math.nan):.2f}")
    return LocalizationVerdict(bool(close_to_bbox and beats_chance and err < centre), reason)


class LocalizationEvaluator(Metric):
    """SRAM localisation against the true source of each generated cell, with the chance (random maps), centre-prior
    and bounding-box baselines, and per baseline a paired per-sample comparison of the argmax error.

    radii: pointing-game radii in reference cells (the first one is ``loc_pointing``).
    region_threshold: a query cell counts when at least this share of it lies in the try-on region and
    min_coverage: at least this share of it is covered by the garment (so that it has a true source).
    random_seed, chance_draws: the chance baseline is the mean over ``chance_draws`` seeded random maps per query
    (seeded by ``random_seed`` and the ``sample_seed`` of the update, else the update count).
    bbox_tolerance, chance_margin: the verdict's thresholds (``localization_verdict``).
    test, n_bootstrap: the paired per-sample comparisons' exact test and bootstrap resamples (``i2am.measures.stats``).
    """

    full_state_update = False

    def __init__(self, radii: Sequence[float] = (1, 2), region_threshold: float = 0.5, min_coverage: float = 0.5,
                 random_seed: int = 0, chance_draws: int = 8, bbox_tolerance: float = 0.05,
                 chance_margin: float = 0.5, test: str = "wilcoxon", n_bootstrap: int = 1000, **kwargs):
        if "uniform_margin" in kwargs:
            raise ValueError("localization.uniform_margin was renamed chance_margin (the verdict's margin over the "
                             "random-map chance level): set evaluators.localization.chance_margin instead")
        super().__init__(**kwargs)
        if not 0 < min_coverage <= 1:
            raise ValueError(f"localization.min_coverage={min_coverage}: must be in (0, 1] (a query needs a true "
                             f"source)")
        if chance_draws < 1:
            raise ValueError(f"localization.chance_draws={chance_draws}: at least 1 random map per query")
        self.radii = tuple(radii)
        self.region_threshold, self.min_coverage = region_threshold, min_coverage
        self.random_seed, self.chance_draws = random_seed, int(chance_draws)
        self.bbox_tolerance, self.chance_margin = bbox_tolerance, chance_margin
        self.test, self.n_bootstrap = test, n_bootstrap
        self.stat_names = ["err", "err_centroid", *(f"hit_r{r:g}" for r in self.radii), "entropy", "max_prob"]
        zeros = torch.zeros(len(CANDIDATES), len(self.stat_names), dtype=torch.float64)
        self.add_state("stat_sums", default=zeros, dist_reduce_fx="sum")
        self.add_state("n_queries", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("mass_sums", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_maps", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("entropy_uniform", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="max")
        self.add_state("sample_errors", default=[], dist_reduce_fx="cat")   # [samples, candidates] mean argmax error

    def update(self, sram: Tensor, query_cells: Tensor, query_grid: Sequence[int], correspondence: Tensor,
               inpaint_mask: Tensor, reference_mask: Tensor, r2g_map: Tensor | None = None,
               query_valid: Tensor | None = None, sample_seed: int | None = None) -> None:
        """sram: [B, P, hr, wr] (e.g. ``maps.sram(layer, points=grid_cells(*query_grid))``), any non-negative scale;
        query_cells: [P, 2] or [B, P, 2] (row, col) on ``query_grid``; correspondence: [B, 2, H, W];
        inpaint_mask: [B, 1, H, W]; reference_mask: [B, 1, Hr, Wr] (garment on the reference image);
        r2g_map: optional raw R2G map [B, h, w] for ``r2g_mass_in_region``; query_valid: optional [B, P] bool;
        sample_seed: seeds the chance baseline's random maps (e.g. from the sample id; default: the update count).
        """
        batch, n_points, *reference_grid = sram.shape
        device = sram.device
        cells = query_cells.to(device).long().expand(batch, n_points, 2)
        sources, keep = self._true_sources(cells, query_grid, reference_grid, correspondence.to(device),
                                           inpaint_mask.to(device), reference_mask.shape[-2:])
        if query_valid is not None:
            keep &= query_valid.to(device).bool()
        owner = torch.arange(batch, device=device)[:, None].expand(batch, n_points)[keep]   # sample of each query
        sources, count = sources[keep], int(keep.sum())
        bbox_points = bbox_mapping_sources(cells, query_grid, inpaint_mask.to(device), reference_mask.to(device),
                                           reference_grid)[keep]
        seed = self.random_seed + (int(self._update_count) if sample_seed is None else int(sample_seed))
        generator = torch.Generator().manual_seed(seed)
        chance = [localization_stats(random_maps(count, reference_grid, generator, device), sources, self.radii)
                  for _ in range(self.chance_draws)]
        per_candidate = (localization_stats(normalise_distribution(sram[keep]), sources, self.radii),  # CANDIDATES
                         {k: torch.stack([c[k] for c in chance]).mean(0) for k in chance[0]},
                         localization_stats(centre_prior_maps(count, reference_grid, device), sources, self.radii),
                         localization_stats(point_maps(bbox_points, reference_grid), sources, self.radii))
        sample_err = torch.full((batch, len(CANDIDATES)), math.nan, dtype=torch.float64)
        queries = torch.zeros(batch, dtype=torch.float64).index_add_(0, owner.cpu(), torch.ones(count,
                                                                                                dtype=torch.float64))
        for index, stats in enumerate(per_candidate):
            self.stat_sums[index] += torch.stack([stats[name].double().sum() for name in self.stat_names])
            err_sums = torch.zeros(batch, dtype=torch.float64).index_add_(0, owner.cpu(), stats["err"].double().cpu())
            sample_err[:, index] = torch.where(queries > 0, err_sums / queries.clamp(min=1), math.nan)
        self.sample_errors.append(sample_err.to(self.stat_sums.device))
        self.n_queries += count
        self.entropy_uniform.fill_(math.log(reference_grid[0] * reference_grid[1]))
        if r2g_map is not None:
            garment_region = (correspondence >= 0).all(dim=1, keepdim=True).float().to(r2g_map.device)
            share, area = mass_in_region(r2g_map, garment_region)
            self.mass_sums += torch.stack([share.double().sum(), area.double().sum()]).to(self.mass_sums.device)
            self.n_maps += share.numel()

    def _true_sources(self, cells, query_grid, reference_grid, correspondence, inpaint_mask, reference_size):
        """True source [B, P, 2] of each query, and which queries count: inside the try-on region, with a source."""
        flat_index = cells[..., 0] * query_grid[1] + cells[..., 1]
        sources, coverage = true_source_cells(correspondence, query_grid, reference_grid, reference_size)
        in_region = pool_to_grid(inpaint_mask, query_grid).flatten(1)
        keep = (in_region.gather(1, flat_index) >= self.region_threshold) & \
               (coverage.gather(1, flat_index) >= self.min_coverage)
        return sources.gather(1, flat_index[..., None].expand(*flat_index.shape, 2)), keep

    def compute(self) -> dict[str, float]:
        means = (self.stat_sums / self.n_queries).tolist()
        out = {}
        first_hit = f"hit_r{self.radii[0]:g}"
        for suffix, row in zip(CANDIDATES, means):
            values = dict(zip(self.stat_names, row))
            out[f"loc_err{suffix}"] = values["err"]
            out[f"loc_err_centroid{suffix}"] = values["err_centroid"]
            out[f"loc_pointing{suffix}"] = values[first_hit]
            for radius in self.radii:
                out[f"loc_pointing_r{radius:g}{suffix}"] = values[f"hit_r{radius:g}"]
            out[f"attn_entropy{suffix}"] = values["entropy"]
            out[f"attn_max_prob{suffix}"] = values["max_prob"]
        out["attn_entropy_uniform"] = float(self.entropy_uniform)
        if int(self.n_maps) > 0:
            out["r2g_mass_in_region"], out["r2g_mass_in_region_uniform_baseline"] = \
                (self.mass_sums / self.n_maps).tolist()
        out["loc_n_queries"] = float(self.n_queries)
        out |= self.paired_gains()
        verdict = localization_verdict(out, self.bbox_tolerance, self.chance_margin)
        out["loc_localizes"] = float(verdict.localizes)
        out["loc_bbox_tolerance"], out["loc_chance_margin"] = float(self.bbox_tolerance), float(self.chance_margin)
        return out

    def paired_gains(self) -> dict[str, float]:
        """``loc_gain{b}`` per baseline: its per-sample mean argmax error minus the map's (positive = the map
        localises better), tested paired over samples; numbers that do not exist (the interval below 10 samples,
        everything without a sample) are left out, as metrics.json cannot hold NaN."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
            errors = dim_zero_cat(self.sample_errors).cpu().numpy() if self.sample_errors else None
        out = {}
        for index, suffix in enumerate(BASELINES, start=1):
            baseline, model = (errors[:, index], errors[:, 0]) if errors is not None else ([], [])
            result = flat(f"loc_gain{suffix}", paired(baseline, model, test=self.test, n_bootstrap=self.n_bootstrap))
            out |= {k: v for k, v in result.items() if not math.isnan(v)}   # no interval below 10 samples: absent
        return out


class SramLocalizationEvaluator(Evaluator):
    """:class:`LocalizationEvaluator` on one sample's SRAMs: every query cell of the first SRAM layer of the run
    (``capture.sram_layers``) against the toy world's true correspondence. Same arguments as LocalizationEvaluator."""

    def __init__(self, **kwargs):
        super().__init__()
        self.metric = LocalizationEvaluator(**kwargs)

    def update(self, ctx: SampleContext) -> None:
        maps, sample = ctx.maps, ctx.sample
        layer = next((k[len("sram/"):] for k in maps.raw if k.startswith("sram/")), None)
        if layer is None or schema.CORRESPONDENCE not in sample:
            raise ValueError("the localization evaluator needs an SRAM layer (capture.sram_layers) and toy data "
                             "with ground-truth correspondence (data=toy_vitonhd)")
        qh, qw = maps.layer_meta(layer)["query_grid"]
        cells = grid_cells(qh, qw)
        self.metric.update(maps.sram(layer, points=cells), cells, (qh, qw), sample[schema.CORRESPONDENCE],
                           sample[schema.INPAINT_MASK], sample[schema.REFERENCE_MASK],
                           r2g_map=maps.r2g.ulam if maps.r2g.available else None,
                           sample_seed=zlib.crc32(ctx.sample_id.encode()))

    def compute(self) -> dict[str, float]:
        return self.metric.compute()
