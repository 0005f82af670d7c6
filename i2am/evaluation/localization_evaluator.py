"""Localisation evaluator over a dataset (toy world only: needs ``correspondence``), and the verdict helper.

Reported names (p = "" for the model, "_uniform_baseline", "_random_baseline", "_bbox_baseline" for the baselines):
``loc_err{p}`` (argmax error / reference diagonal), ``loc_err_centroid{p}``, ``loc_pointing{p}`` (argmax within the
first radius), ``loc_pointing_r{r}{p}``, ``attn_entropy{p}`` (nats), ``attn_max_prob{p}``; ``r2g_mass_in_region`` and
``r2g_mass_in_region_uniform_baseline`` (the garment's area share); ``loc_n_queries``; ``loc_localizes`` (0/1, see
``localization_verdict``) with the thresholds it used, ``loc_bbox_tolerance`` and ``loc_uniform_margin``.

:class:`SramLocalizationEvaluator` is the attribution loop's evaluator: it reads the run's SRAM layer from the maps.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric

from i2am.data import schema
from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.measures.localization import (
    bbox_mapping_sources,
    grid_cells,
    localization_stats,
    mass_in_region,
    normalise_distribution,
    point_maps,
    pool_to_grid,
    random_maps,
    true_source_cells,
    uniform_maps,
)

CANDIDATES = ("", "_uniform_baseline", "_random_baseline", "_bbox_baseline")


@dataclass(frozen=True)
class LocalizationVerdict:
    localizes: bool
    reason: str


def localization_verdict(metrics: Mapping[str, float], bbox_tolerance: float = 0.05,
                         uniform_margin: float = 0.5) -> LocalizationVerdict:
    """A model localises only if its argmax error comes close to the bounding-box mapping (at most ``bbox_tolerance``
    of the reference diagonal above it, or below it) AND clearly beats the uniform map (at most
    ``(1 - uniform_margin)`` times its error). The uniform and random maps alone are too weak a bar (docs/toy_world.md).
    """
    err, bbox, uniform = (metrics[k] for k in ("loc_err", "loc_err_bbox_baseline", "loc_err_uniform_baseline"))
    close_to_bbox = err <= bbox + bbox_tolerance
    beats_uniform = err <= (1 - uniform_margin) * uniform
    reason = (f"argmax error {err:.3f} vs bounding-box mapping {bbox:.3f} (tolerance +{bbox_tolerance}) and uniform "
              f"{uniform:.3f} (needs <= {(1 - uniform_margin) * uniform:.3f}); attention entropy "
              f"{metrics.get('attn_entropy', float('nan')):.2f} nats (uniform "
              f"{metrics.get('attn_entropy_uniform_baseline', float('nan')):.2f}), max probability "
              f"{metrics.get('attn_max_prob', float('nan')):.2f}")
    return LocalizationVerdict(bool(close_to_bbox and beats_uniform), reason)


class LocalizationEvaluator(Metric):
    """SRAM localisation against the true source of each generated cell, with uniform, random and bbox baselines.

    radii: pointing-game radii in reference cells (the first one is ``loc_pointing``).
    region_threshold: a query cell counts when at least this share of it lies in the try-on region and
    min_coverage: at least this share of it is covered by the garment (so that it has a true source).
    random_seed: seed of the random-map baseline (advanced with every update).
    bbox_tolerance, uniform_margin: the verdict's thresholds (``localization_verdict``).
    """

    full_state_update = False

    def __init__(self, radii: Sequence[float] = (1, 2), region_threshold: float = 0.5, min_coverage: float = 0.5,
                 random_seed: int = 0, bbox_tolerance: float = 0.05, uniform_margin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0 < min_coverage <= 1:
            raise ValueError(f"localization.min_coverage={min_coverage}: must be in (0, 1] (a query needs a true "
                             f"source)")
        self.radii = tuple(radii)
        self.region_threshold, self.min_coverage = region_threshold, min_coverage
        self.random_seed = random_seed
        self.bbox_tolerance, self.uniform_margin = bbox_tolerance, uniform_margin
        self.stat_names = ["err", "err_centroid", *(f"hit_r{r:g}" for r in self.radii), "entropy", "max_prob"]
        zeros = torch.zeros(len(CANDIDATES), len(self.stat_names), dtype=torch.float64)
        self.add_state("stat_sums", default=zeros, dist_reduce_fx="sum")
        self.add_state("n_queries", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("mass_sums", default=torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_maps", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, sram: Tensor, query_cells: Tensor, query_grid: Sequence[int], correspondence: Tensor,
               inpaint_mask: Tensor, reference_mask: Tensor, r2g_map: Tensor | None = None,
               query_valid: Tensor | None = None) -> None:
        """sram: [B, P, hr, wr] (e.g. ``maps.sram(layer, points=grid_cells(*query_grid))``), any non-negative scale;
        query_cells: [P, 2] or [B, P, 2] (row, col) on ``query_grid``; correspondence: [B, 2, H, W];
        inpaint_mask: [B, 1, H, W]; reference_mask: [B, 1, Hr, Wr] (garment on the reference image);
        r2g_map: optional raw R2G map [B, h, w] for ``r2g_mass_in_region``; query_valid: optional [B, P] bool.
        """
        batch, n_points, *reference_grid = sram.shape
        device = sram.device
        cells = query_cells.to(device).long().expand(batch, n_points, 2)
        sources, keep = self._true_sources(cells, query_grid, reference_grid, correspondence.to(device),
                                           inpaint_mask.to(device), reference_mask.shape[-2:])
        if query_valid is not None:
            keep &= query_valid.to(device).bool()
        sources, count = sources[keep], int(keep.sum())
        bbox_points = bbox_mapping_sources(cells, query_grid, inpaint_mask.to(device), reference_mask.to(device),
                                           reference_grid)[keep]
        generator = torch.Generator().manual_seed(self.random_seed + int(self._update_count))
        candidates = (normalise_distribution(sram[keep]),  # same order as CANDIDATES
                      uniform_maps(count, reference_grid, device),
                      random_maps(count, reference_grid, generator, device),
                      point_maps(bbox_points, reference_grid))
        for index, prob in enumerate(candidates):
            stats = localization_stats(prob, sources, self.radii)
            self.stat_sums[index] += torch.stack([stats[name].double().sum() for name in self.stat_names])
        self.n_queries += count
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
        if int(self.n_maps) > 0:
            out["r2g_mass_in_region"], out["r2g_mass_in_region_uniform_baseline"] = \
                (self.mass_sums / self.n_maps).tolist()
        out["loc_n_queries"] = float(self.n_queries)
        verdict = localization_verdict(out, self.bbox_tolerance, self.uniform_margin)
        out["loc_localizes"] = float(verdict.localizes)
        out["loc_bbox_tolerance"], out["loc_uniform_margin"] = float(self.bbox_tolerance), float(self.uniform_margin)
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
                           r2g_map=maps.r2g.ulam if maps.r2g.available else None)

    def compute(self) -> dict[str, float]:
        return self.metric.compute()
