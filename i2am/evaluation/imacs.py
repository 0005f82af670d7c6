"""IMACS, the Inpainting Mask Attention Consistency Score (docs/method.md §4, Appendix A step 6).

IMACS = mean attribution inside a region - penalty * mean attribution outside it, per image, then a plain mean over
the dataset. IMACS_g scores the R2G map against the inpainting (try-on) region, IMACS_r the G2R map against the
garment mask.

Presets (``image_map`` is what ``to_image(..., preset=...)`` returns for the same preset):

- ``official``: ``image_map`` is P, the official post-processed map (values >= 0.6 already set to 1). The attribution
  is A = 1 - P in both directions, as ``cal_IMACS`` does. G2R adds eps = 1e-8 to both denominators, R2G adds none, so
  an empty R2G region gives NaN exactly as the official numpy code does. Quirk kept on purpose: in R2G the pixels
  the official threshold set to 1 (the strongest raw attention) score 0.
- ``clean``: ``image_map`` is already an attribution map A (high = attributed); no inversion; eps = 1e-8 in both
  directions.

The evaluator reports both side by side (``imacs_{g|r}_official``, ``imacs_{g|r}_clean``, the other preset rendered
from the same ULAMs) next to ``imacs_{g|r}`` under the run's preset. Claims decide on ``DECISION_PRESET``: for maps
over spatial reference tokens the official 1 - P reverses the ranking (the region mask itself scores -3, the worst
value, and its complement +1), so the clean orientation, where the region scores best, decides; the official
value is shown beside it.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric

from i2am.data import schema
from i2am.engine.render import to_image
from i2am.evaluation.evaluator import Evaluator, SampleContext

DIRECTIONS = ("r2g", "g2r")
PRESETS = ("official", "clean")
EPS = 1e-8
METRIC_NAMES = {"r2g": "imacs_g", "g2r": "imacs_r"}
DECISION_PRESET = "clean"   # the orientation claims decide on for spatial-token maps: the region mask scores best


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"imacs: {name}={value!r}; choose from {choices}")


def attribution_from_image_map(image_map: Tensor, preset: str = "official") -> Tensor:
    """The attribution the score reads (high = attributed): 1 - P for ``official``, the map itself for ``clean``.

    For single-token R2G maps this is also the map the official detection pipeline decodes (docs/method.md §5.1).
    """
    _check_choice("preset", preset, PRESETS)
    image_map = image_map.float()
    return 1.0 - image_map if preset == "official" else image_map


def match_mask(mask: Tensor, image_map: Tensor) -> Tensor:
    """``mask`` as a float tensor broadcastable to ``image_map`` [..., H, W]; drops a singleton channel [B, 1, H, W]."""
    if mask.dim() == image_map.dim() + 1 and mask.shape[-3] == 1:
        mask = mask.squeeze(-3)
    if mask.shape[-2:] != image_map.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match map of shape {tuple(image_map.shape)}: "
                         "resize the mask to the map's resolution (IMACS is computed at image resolution)")
    return mask.to(device=image_map.device, dtype=torch.float32)


def imacs(image_map: Tensor, region_mask: Tensor, direction: str = "r2g", preset: str = "official",
          penalty: float = 3.0) -> Tensor:
    """IMACS per map: [..., H, W] -> [...].

    region_mask: 1 on the region, broadcastable to ``image_map`` ([B, 1, H, W] is accepted for [B, H, W] maps): the
        try-on / inpainting region for ``r2g`` (IMACS_g), the garment for ``g2r`` (IMACS_r).
    """
    _check_choice("direction", direction, DIRECTIONS)
    attribution = attribution_from_image_map(image_map, preset)
    inside = match_mask(region_mask, attribution)
    outside = 1.0 - inside
    eps = 0.0 if (preset == "official" and direction == "r2g") else EPS
    dims = (-2, -1)
    score_in = (attribution * inside).sum(dims) / (inside.sum(dims) + eps)
    score_out = (attribution * outside).sum(dims) / (outside.sum(dims) + eps)
    return score_in - penalty * score_out


class IMACS(Metric):
    """Dataset IMACS: the plain mean of per-image ``imacs`` over every sample seen (sum and count sync under DDP)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, direction: str = "r2g", preset: str = "official", penalty: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        _check_choice("direction", direction, DIRECTIONS)
        _check_choice("preset", preset, PRESETS)
        self.direction, self.preset, self.penalty = direction, preset, penalty
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, image_map: Tensor, region_mask: Tensor) -> None:
        """image_map: [B, H, W] (or [H, W] for one sample); region_mask: same or [B, 1, H, W]."""
        scores = imacs(image_map, region_mask, self.direction, self.preset, self.penalty)
        self.score_sum += scores.double().sum()
        self.count += scores.numel()

    def compute(self) -> Tensor:
        return self.score_sum / self.count


class ImacsEvaluator(Evaluator):
    """IMACS_g (R2G map vs inpainting region) and IMACS_r (G2R map vs garment mask), under the names of metrics.json.

    directions: the ones to report; single-token models such as PBE have no G2R map, so their configs use ("r2g",).
    Both are always computed together on every rank, which keeps ``compute`` safe under DDP.
    """

    def __init__(self, preset: str = "official", penalty: float = 3.0, directions=DIRECTIONS,
                 both_presets: bool = True):
        super().__init__()
        for direction in directions:
            _check_choice("direction", direction, DIRECTIONS)
        _check_choice("preset", preset, PRESETS)
        self.directions, self.preset, self.both_presets = tuple(directions), preset, both_presets
        self.metrics = torch.nn.ModuleDict({d: IMACS(d, preset, penalty) for d in self.directions})
        self.by_preset = torch.nn.ModuleDict({f"{d}_{p}": IMACS(d, p, penalty) for d in self.directions
                                              for p in PRESETS} if both_presets else {})

    def update(self, ctx: SampleContext) -> None:
        """The sample's rendered ULAMs against its inpainting mask (R2G) and garment mask (G2R); with
        ``both_presets`` also each preset's rendering of the same ULAMs (the run's preset: ``ctx.rendered``)."""
        masks = {"r2g": ctx.sample.get(schema.INPAINT_MASK), "g2r": ctx.sample.get(schema.REFERENCE_MASK)}
        self.update_maps(r2g_map=ctx.rendered.get("r2g"), inpaint_mask=masks["r2g"],
                         g2r_map=ctx.rendered.get("g2r"), reference_mask=masks["g2r"])
        for key, metric in self.by_preset.items():
            direction, preset = key.split("_")
            rendered = ctx.rendered.get(direction)
            if rendered is None or masks[direction] is None:
                continue
            image_map = rendered if preset == self.preset else to_image(
                getattr(ctx.maps, direction).ulam, tuple(rendered.shape[-2:]), direction, preset)
            metric.update(image_map, masks[direction])

    def update_maps(self, r2g_map: Tensor | None = None, inpaint_mask: Tensor | None = None,
                    g2r_map: Tensor | None = None, reference_mask: Tensor | None = None) -> None:
        """Maps at image resolution from ``to_image`` (same preset); masks [B, 1, H, W] or [B, H, W]."""
        for direction, image_map, mask, mask_name in (("r2g", r2g_map, inpaint_mask, "inpaint_mask"),
                                                      ("g2r", g2r_map, reference_mask, "reference_mask")):
            if image_map is None:
                continue
            if direction not in self.metrics:
                raise ValueError(f"ImacsEvaluator got a {direction} map but directions={self.directions}")
            if mask is None:
                raise ValueError(f"ImacsEvaluator.update: the {direction} map needs {mask_name}")
            self.metrics[direction].update(image_map, mask)

    def compute(self) -> dict[str, float]:
        """Every direction is computed on every rank (the sync is collective); one that scored no sample on any rank
        (0 / 0: a G2R map over text tokens has no garment mask to be compared with) is left out."""
        values = {METRIC_NAMES[d]: float(self.metrics[d].compute()) for d in self.directions}
        for key, metric in self.by_preset.items():
            direction, preset = key.split("_")
            values[f"{METRIC_NAMES[direction]}_{preset}"] = float(metric.compute()) if metric.count > 0 else math.nan
        return {name: value for name, value in values.items() if not math.isnan(value)}
