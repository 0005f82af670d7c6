"""``evaluator=faithfulness``: G2R deletion / insertion curves and R2G counterfactuals inside ``i2am attribute``.

Runs on a bounded subset: the first ``samples`` samples the run finishes (on a restart, the samples that already
hold a ``faithfulness.json`` in their sample folder count, so a resumed run evaluates the same subset; with several
DDP ranks each rank counts what it sees). Per evaluated sample it writes ``faithfulness.json`` (every curve) and
``faithfulness.png`` (the curves figure) under the sample's folder; per-sample numbers go into the sample's record,
dataset numbers into ``metrics.json``: means, and for each gap of the map (to random order, to the inverse order and
to the best trivial order, chosen on the dataset means) a paired per-sample comparison (``i2am.measures.stats``: n,
effect, an exact test's p, a bootstrap-over-samples interval from 10 samples on).
See docs/faithfulness.md for what each number means.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from i2am.engine.layers import SupportsAttribution
from i2am.evaluation.evaluator import Evaluator, SampleContext
from i2am.evaluation.faithfulness import (
    COUNTERFACTUALS,
    FRACTIONS,
    MODES,
    SPACES,
    check_counterfactuals,
    g2r_curves,
    pick_donor,
    r2g_counterfactuals,
    summarise_g2r,
)
from i2am.evaluation.rerun import reruns_this_sample
from i2am.measures.stats import flat, paired
from i2am.measures.trivial_orders import TRIVIAL_ORDERS
from i2am.runs import atomic_write_text
from i2am.viz.faithfulness import curves_figure

G2R_STATS = ("auc", "auc_inverse", "auc_random", "auc_random_std", "gap", "gap_inverse",
             *(f"{k}_{t}" for t in TRIVIAL_ORDERS for k in ("auc", "gap")))
CURVE_STATS = ("all_removed", "normaliser", "out_of_range")
PAIRED_GAPS = ("gap", "gap_inverse")     # per-sample differences tested against 0, plus gap_trivial (best trivial)
REFERENCE_KEYS = ("reference", "reference_mask", "cloth_warp", "cloth_warp_mask", "lr")   # lr: PASD's LR image
CF_STATS = ("spearman", "topk", "spearman_image", "mask_spearman_image", "spearman_vs_mask", "change")


def counterfactual_keys(variants: Sequence[str]) -> list[str]:
    return [f"r2g_cf_{v}_{s}" for v in variants for s in CF_STATS] + ["r2g_cf_topk_baseline"]


def faithfulness_keys(modes: Sequence[str], counterfactual: bool,
                      variants: Sequence[str] = ("swap", "null")) -> list[str]:
    keys = []
    for mode in modes:
        for space in SPACES:
            keys += [f"faith_{mode}_{space}_{s}" for s in CURVE_STATS]
            keys += [f"faith_{mode}_{space}_{c}_{s}" for c in ("del", "ins") for s in G2R_STATS]
    if "full" in modes and "proxy" in modes:
        keys += [f"faith_proxy_{space}_del_curve_error" for space in SPACES]
    return keys + (counterfactual_keys(variants) if counterfactual else [])


class SampleRows(Metric):
    """One row of numbers per evaluated sample (a list state: merges by concatenation, in merge order)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("rows", default=[], dist_reduce_fx="cat")

    def update(self, row: torch.Tensor) -> None:
        self.rows.append(row.double().reshape(1, -1))

    def compute(self) -> torch.Tensor:
        return dim_zero_cat(self.rows) if self.rows else torch.empty(0, 0, dtype=torch.float64)


def summarise_rows(keys: Sequence[str], rows: torch.Tensor, n_bootstrap: int, confidence: float, seed: int,
                   prefix: str, test: str = "wilcoxon") -> dict[str, float]:
    """The NaN-ignoring mean of each number over the evaluated samples, and for each G2R gap a paired per-sample
    comparison (``flat``: ``_n``, ``_lo``/``_hi`` from 10 samples on, ``_p``, ``_min_p``); ``_gap_trivial``: the gap
    to the trivial order with the best mean AUC (its index in TRIVIAL_ORDERS under ``_best_trivial``)."""
    if rows.numel() == 0:
        return {}
    column = {k: rows[:, j] for j, k in enumerate(keys)}
    out = {}
    for key, values in column.items():
        finite = values[~torch.isnan(values)]
        out[key] = float(finite.mean()) if finite.numel() else math.nan

    def compare(key, values):
        out.update(flat(key, paired(values.numpy(), test=test, n_bootstrap=n_bootstrap, confidence=confidence,
                                    seed=seed)))
    for key in keys:
        if key.endswith("_spearman_vs_mask") or (key.startswith("faith_")
                                                 and key.endswith(tuple(f"_{g}" for g in PAIRED_GAPS))):
            compare(key, column[key])
        if key.startswith("faith_") and key.endswith(("_del_gap", "_ins_gap")):
            base = key[: -len("_gap")]
            sign = -1.0 if base.endswith("_del") else 1.0
            means = {t: out[f"{base}_auc_{t}"] for t in TRIVIAL_ORDERS if not math.isnan(out[f"{base}_auc_{t}"])}
            best = max(means, key=lambda t: sign * means[t]) if means else None
            if best is not None:
                out[f"{base}_best_trivial"] = float(TRIVIAL_ORDERS.index(best))
                out[f"{base}_auc_best_trivial"] = means[best]
            nothing = torch.full_like(column[key], math.nan)   # no trivial order on these samples: n = 0
            compare(f"{base}_gap_trivial", column[f"{base}_gap_{best}"] if best else nothing)
    out[f"{prefix}_n_samples"] = float(rows.shape[0])
    return out


def write_json(path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1))


class FaithfulnessEvaluator(Evaluator):
    """samples: how many samples to evaluate; fractions: the removal grid (0 ... 1); random_orders: random-order
    baselines per sample; modes: "full" (whole regeneration) and/or "proxy" (teacher-forced x0 at ``proxy_steps``,
    fractions of the schedule); removal: "replace" (the unconditional context: in distribution), "knockout"
    (-inf logits) or "auto" (replace where the unconditional context has one token per reference cell); trivial:
    the input-only orders the map must beat (``i2am.measures.trivial_orders``);
    foreground_key: the batch key of the reference's object mask (the ``foreground`` order); test: the exact paired
    test of the dataset gaps ("wilcoxon" or "sign");
    counterfactual: also run the R2G counterfactuals; counterfactuals: which (``swap``: the reference of another
    sample of the run's dataset, drawn by ``pick_donor`` from (seed, sample id); ``rotated``: the sample's own
    reference rotated by 180°; ``null``: the unconditional context); region_key: the batch key of the generated
    region (outputs are compared there; None = whole image); reference_keys: the batch keys that make up the
    reference (what the swap replaces and the rotation turns)."""

    marker = "faithfulness.json"

    def __init__(self, samples: int = 4, fractions: Sequence[float] = FRACTIONS, random_orders: int = 10,
                 modes: Sequence[str] = ("full", "proxy"), removal: str = "auto",
                 proxy_steps: Sequence[float] = (0.25, 0.5, 0.75), counterfactual: bool = True, topk: float = 0.2,
                 batch_size: int = 8, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
                 region_key: str | None = "inpaint_mask",
                 reference_keys: Sequence[str] = REFERENCE_KEYS,
                 figures: bool = True, counterfactuals: Sequence[str] = ("swap", "null"),
                 trivial: Sequence[str] = TRIVIAL_ORDERS, foreground_key: str | None = "reference_mask",
                 test: str = "wilcoxon"):
        super().__init__()
        if random_orders < 1:
            raise ValueError(f"faithfulness.random_orders={random_orders}: at least 1 (10 by default)")
        self.trivial, self.foreground_key, self.test = list(trivial), foreground_key, test
        bad = [m for m in modes if m not in MODES]
        if bad:
            raise ValueError(f"faithfulness.modes {bad}: choose from {MODES}")
        self.samples, self.fractions, self.random_orders = int(samples), [float(f) for f in fractions], random_orders
        self.modes, self.removal, self.proxy_steps = list(modes), removal, list(proxy_steps)
        counterfactuals = ["null" if c is None else c for c in counterfactuals]   # YAML reads a bare null as None
        bad = [c for c in counterfactuals if c not in COUNTERFACTUALS]
        if bad:
            raise ValueError(f"faithfulness.counterfactuals {bad}: choose from {COUNTERFACTUALS}")
        self.counterfactual, self.topk, self.batch_size = counterfactual, topk, batch_size
        self.counterfactuals = list(counterfactuals)
        self.n_bootstrap, self.confidence, self.seed = n_bootstrap, confidence, seed
        self.region_key, self.reference_keys, self.figures = region_key, list(reference_keys), figures
        self.keys = faithfulness_keys(self.modes, counterfactual, self.counterfactuals)
        self.rows = SampleRows()

    def update(self, ctx: SampleContext) -> None:
        if not reruns_this_sample(ctx, "faithfulness", self.marker, self.samples):
            return
        sample, maps = ctx.sample, ctx.maps
        if self.counterfactual and maps.r2g.available:
            check_counterfactuals(ctx.adapter, self.counterfactuals)   # refused before the G2R curves run
        donor, donor_id = self._donor(ctx) if self.counterfactual and maps.r2g.available else (None, None)
        region = sample.get(self.region_key) if self.region_key else None
        values, payload, baseline, inputs = {}, {"sample_id": ctx.sample_id}, None, None
        if maps.g2r.available and _has_spatial_layers(ctx.adapter):
            # a video's G2R map is per generated frame: the tokens are ranked by the whole video's (the frame mean)
            scores = maps.g2r.ulam if maps.g2r.frames is None else maps.g2r.ulam.mean(-3)
            result = g2r_curves(ctx.adapter, ctx.sampler, sample, scores, sample_id=ctx.sample_id,
                                query_mask=region, fractions=self.fractions, random_orders=self.random_orders,
                                seed=self.seed, modes=self.modes, removal=self.removal,
                                proxy_steps=self.proxy_steps, batch_size=self.batch_size, trivial=self.trivial,
                                foreground=sample.get(self.foreground_key) if self.foreground_key else None)
            shared = result.pop("baseline")
            baseline, inputs = shared["image"], shared["inputs"]
            values |= summarise_g2r(result)
            payload["g2r"] = result
            if self.figures:
                for space in SPACES:
                    curves_figure(ctx.sample_dir / f"faithfulness_{space}.png", result["fractions"],
                                  result["curves"], title=f"{ctx.sample_id}: G2R ULAM order ({result['removal']})",
                                  space=space)
        if self.counterfactual and maps.r2g.available:
            cf = r2g_counterfactuals(ctx.adapter, ctx.sampler, sample, maps.r2g.ulam, donor=donor,
                                     variants=self.counterfactuals, region=region,
                                     reference_keys=self.reference_keys, topk=self.topk, baseline_image=baseline,
                                     inputs=inputs, temporal_ratio=maps.meta.get("video", {}).get("temporal_ratio", 1))
            payload["r2g_counterfactual"] = {"donor_id": donor_id,
                                             "maps": {k: v.tolist() for k, v in cf.pop("maps").items()}}
            values |= cf
        payload["values"] = values
        write_json(ctx.sample_dir / self.marker, payload)
        self.rows.update(torch.tensor([values.get(k, math.nan) for k in self.keys], dtype=torch.float64))

    def _donor(self, ctx: SampleContext):
        if "swap" not in self.counterfactuals:
            return None, None
        if ctx.dataset is None:
            raise ValueError("the faithfulness swap counterfactual takes another sample's reference from the run's "
                             "dataset, but SampleContext.dataset is None; run it inside `i2am attribute`, pass "
                             "dataset=, or set evaluators.faithfulness.counterfactuals=[rotated,null]")
        return pick_donor(ctx.dataset, ctx.sample, ctx.sample_id, self.reference_keys, self.seed)

    def compute(self) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
            rows = self.rows.compute()
        return summarise_rows(self.keys, rows, self.n_bootstrap, self.confidence, self.seed, "faith", self.test)


def _has_spatial_layers(adapter) -> bool:
    layers = adapter.attribution_layers() if isinstance(adapter, SupportsAttribution) else []
    return any(s.ref_grid is not None for s in layers)
