"""Pure maths of the faithfulness and sanity checks: normalised curves, AUCs, bootstrap intervals, rank statistics and
map similarity (docs/faithfulness.md says what each number means)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics.functional import spearman_corrcoef, structural_similarity_index_measure


def normalised_auc(fractions: Sequence[float], curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under ``curve`` ([..., F]) over ``fractions`` divided by their span: the mean height."""
    x = torch.as_tensor(list(fractions), dtype=torch.float64)
    if x.numel() < 2 or not bool((x[1:] > x[:-1]).all()):
        raise ValueError(f"fractions must be at least two increasing values, got {list(fractions)}")
    return torch.trapezoid(curve.double(), x, dim=-1) / (x[-1] - x[0])


def retained(change: torch.Tensor, full_change: torch.Tensor, tol: float = 1e-12) -> torch.Tensor:
    """How much of the output survives: 1 - change / change-with-every-token-removed, per curve ([..., F]).

    NaN where removing every token changes nothing (``full_change <= tol``): the output does not depend on the
    reference, so there is nothing to attribute and no curve to normalise.
    """
    full = full_change.double().unsqueeze(-1)
    out = 1.0 - change.double() / full.clamp_min(tol)
    return torch.where(full > tol, out, torch.full_like(out, float("nan")))


def bootstrap_mean_ci(values: torch.Tensor, n_bootstrap: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` (1-D, NaN dropped) and its percentile-bootstrap interval; NaNs when nothing is left,
    a zero-width interval for one value."""
    values = values.double().flatten()
    values = values[~torch.isnan(values)]
    if values.numel() == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.numel() == 1:
        return mean, mean, mean
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, values.numel(), (n_bootstrap, values.numel()), generator=g)
    means = values[idx].mean(1)
    alpha = (1.0 - confidence) / 2
    lo, hi = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
    return mean, lo, hi


def bootstrap_gap_ci(attribution: float, random: torch.Tensor, sign: float, n_bootstrap: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Per-sample gap ``sign * (attribution - mean(random))`` and its bootstrap interval over the random orders."""
    mean, lo, hi = bootstrap_mean_ci(random, n_bootstrap, confidence, seed)
    gaps = sorted(sign * (attribution - v) for v in (mean, lo, hi))
    return sign * (attribution - mean), gaps[0], gaps[2]


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation of two flat tensors (average ranks for ties); 0 when either is constant."""
    x, y = x.double().flatten(), y.double().flatten()
    if x.numel() < 2 or bool((x == x[0]).all()) or bool((y == y[0]).all()):
        return 0.0
    return float(spearman_corrcoef(x, y))


def topk_overlap(scores: torch.Tensor, target: torch.Tensor, fraction: float) -> float:
    """|top-k(scores) ∩ top-k(target)| / k with k = ceil(fraction * n) (ties: lower index first)."""
    scores, target = scores.flatten(), target.flatten()
    k = max(1, math.ceil(fraction * scores.numel()))
    a = set(torch.argsort(-scores.double(), stable=True)[:k].tolist())
    b = set(torch.argsort(-target.double(), stable=True)[:k].tolist())
    return len(a & b) / k


def minmax(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise each map of [..., h, w] to [0, 1] (a constant map becomes 0)."""
    flat = x.double().flatten(-2)
    lo, hi = flat.amin(-1, keepdim=True), flat.amax(-1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp_min(eps)).reshape(x.shape)


def map_ssim(a: torch.Tensor, b: torch.Tensor, size: tuple[int, int] | None = None) -> float:
    """SSIM of two [h, w] maps after min-max normalisation (and a bilinear resize to ``size``, e.g. the image
    size, as saliency sanity checks compare maps at image resolution)."""
    def prep(m):
        m = minmax(m.float())[None, None].float()
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False).clamp(0, 1) if size else m
    a, b = prep(a), prep(b)
    kernel = min(11, *(s - (1 - s % 2) for s in a.shape[-2:]))   # largest odd kernel the map holds, at most 11
    return float(structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=max(kernel, 3)))


def map_hog(a: torch.Tensor, b: torch.Tensor, size: tuple[int, int] | None = None) -> float:
    """Pearson correlation of the HOG descriptors (``skimage.feature.hog``) of two [h, w] maps after min-max
    normalisation (and a resize to ``size``), the edge-structure similarity of Adebayo et al. 2018; 0 when either
    descriptor is constant."""
    from skimage.feature import hog

    def descriptor(m):
        m = minmax(m.float())[None, None].float()
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False) if size else m
        m = m[0, 0].clamp(0, 1).numpy()
        cell = max(2, min(m.shape) // 8)
        return torch.from_numpy(hog(m, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
                                    feature_vector=True)).double()
    x, y = descriptor(a), descriptor(b)
    if x.numel() < 2 or float(x.std()) == 0 or float(y.std()) == 0:
        return 0.0
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])
