"""From grid maps to image-space maps: the official post-processing (docs/method.md Appendix A step 5) and a clean one.

``preset="official"`` reproduces the authors' ``make_images`` to float32 precision and returns their P, the array
that their ``cal_IMACS`` consumes (so ``i2am.evaluation.imacs(..., preset="official")`` applies their ``1 - P``):
  1. G2R only, when ``cloth_mask`` is given ("cloth forcing"): bicubic-resize the mask to the grid (no antialias,
     so values may leave [0, 1]) and multiply.
  2. min-max normalise: (M - min) / (max - min + 1e-8).
  3. bicubic resize to ``size`` (align_corners=False).
  4. min-max normalise again (same formula).
  5. G2R: P = 1 - P, then P[P >= 0.6] = 1.   R2G: no inversion, P[P >= 0.6] = 1.
``preset="clean"`` returns an attribution map A (high = attributed) and fixes the official quirks deliberately:
  no cloth forcing (it pushes IMACS_r up by zeroing everything off the garment), no inversions, one min-max after a
  bicubic resize clamped at 0, and the paper's display threshold: values <= ``threshold`` (0.4) become 0.
  ``invert=True`` gives the official single-token R2G reading (1 - map, docs/method.md §3.6) on top of the clean
  pipeline.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import torch

from i2am.engine.maps import bicubic

EPS = 1e-8


def minmax(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Min-max normalise each map over its last two dims, as the official code: (x - min) / (max - min + eps)."""
    flat = x.flatten(-2)
    lo = flat.min(-1, keepdim=True).values.unsqueeze(-1)
    hi = flat.max(-1, keepdim=True).values.unsqueeze(-1)
    return (x - lo) / (hi - lo + eps)


def to_image(grid_map: torch.Tensor, size: tuple[int, int], direction: str = "r2g", preset: str = "official",
             cloth_mask: torch.Tensor | None = None, *, threshold: float = 0.4, invert: bool = False) -> torch.Tensor:
    """Post-process grid maps [..., h, w] into image-space maps [..., H, W] (float32).

    cloth_mask: the garment mask at image resolution, [..., H, W] or [..., 1, H, W] broadcastable to the maps; used by
    the official G2R cloth forcing only.
    """
    if direction not in ("r2g", "g2r"):
        raise ValueError(f"to_image: direction must be 'r2g' or 'g2r', got {direction!r}")
    m = grid_map.float()
    if preset == "official":
        if direction == "g2r" and cloth_mask is not None:
            cm = cloth_mask.float()
            if cm.dim() == m.dim() + 1 and cm.shape[-3] == 1:
                cm = cm.squeeze(-3)
            m = m * bicubic(cm, m.shape[-2:])
        p = minmax(bicubic(minmax(m), size))
        if direction == "g2r":
            p = 1 - p
        return torch.where(p >= 0.6, torch.ones_like(p), p)
    if preset == "clean":
        a = minmax(bicubic(m, size).clamp(min=0))
        if invert:
            a = 1 - a
        return torch.where(a <= threshold, torch.zeros_like(a), a)
    raise ValueError(f"to_image: preset must be 'official' or 'clean', got {preset!r}")


def overlay(image: np.ndarray, attribution, alpha_image: float = 0.7, alpha_map: float = 0.5) -> np.ndarray:
    """The paper's overlay, image * 0.7 + jet(map) * 0.5, saturating (docs/method.md §3.5), in RGB: high attribution
    is red (the official code's BGR/RGB mix-up is not reproduced). image: [H, W, 3] uint8, or float in [0, 1];
    attribution: [H, W] in [0, 1] (tensor or array). Returns the image's kind: uint8, or float in [0, 1]."""
    a = np.asarray(attribution.detach().cpu() if torch.is_tensor(attribution) else attribution, dtype=np.float32)
    colour = matplotlib.colormaps["jet"](np.clip(a, 0, 1))[..., :3]
    if image.dtype == np.uint8:
        out = image.astype(np.float32) * alpha_image + colour * 255.0 * alpha_map
        return np.clip(out, 0, 255).round().astype(np.uint8)
    return np.clip(alpha_image * image + alpha_map * colour, 0, 1)
