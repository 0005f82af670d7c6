"""Figures of attention distributions over a grid of cells, shared by the metrics and the training losses."""
from __future__ import annotations

import torch


def grid_entropy(prob: torch.Tensor) -> torch.Tensor:
    """[..., h, w] distributions -> [...] Shannon entropy in nats (0 log 0 = 0).

    log is taken of p clamped to the dtype's smallest normal, so a collapsed (exactly one-hot) row has a finite
    gradient instead of log(0): the training guards differentiate through it.
    """
    p = prob.flatten(-2)
    return -(p * p.clamp_min(torch.finfo(p.dtype).tiny).log()).sum(dim=-1)
