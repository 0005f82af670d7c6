"""Collapse diagnostics and opt-in guards. Not part of the paper: the paper presets leave every guard off.

docs/toy_world.md measured that at the paper's weights CWG drives every query's attention onto one reference cell within
a few hundred steps. Training logs `attention_entropy` and `attention_max_prob` to show it, and may enable
`cwg_is_active` (CWG only after a warm-up) and `entropy_floor_loss` (penalise queries whose entropy falls below a floor)
as explicit, documented options.
"""

import torch

from i2am.engine.distributions import grid_entropy as query_entropy  # [B, Lq, hr, wr] -> [B, Lq]


def masked_mean(values: torch.Tensor, mask: torch.Tensor, empty: float = 0.0) -> torch.Tensor:
    """Mean of `values` [B, Lq] over `mask` [B, Lq] (bool); `empty` when no query is masked."""
    weights = mask.to(values.dtype)
    count = weights.sum()
    mean = (values * weights).sum() / count.clamp_min(1)
    return torch.where(count > 0, mean, torch.full_like(mean, empty))


@torch.no_grad()
def attention_diagnostics(attn: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean entropy (nats) and mean max probability over masked queries, without gradient; NaN if none is masked.

    Uniform attention over N cells has entropy log N (3.87 nats for 48 cells, 6.94 for 37x28); collapse gives ~0
    entropy and max probability ~1.
    """
    nan = float("nan")
    return {
        "attention_entropy": masked_mean(query_entropy(attn), mask, empty=nan),
        "attention_max_prob": masked_mean(attn.flatten(-2).amax(dim=-1), mask, empty=nan),
    }


def entropy_floor_loss(attn: torch.Tensor, mask: torch.Tensor, floor: float, weight: float) -> torch.Tensor:
    """weight * mean over masked queries of relu(floor - H_j): zero while every masked query keeps H_j >= floor."""
    return weight * masked_mean(torch.relu(floor - query_entropy(attn)), mask)


def cwg_is_active(step: int | None, warmup_steps: int) -> bool:
    """CWG applies from global step `warmup_steps` on; a warm-up of 0 (the paper) means always."""
    if warmup_steps <= 0:
        return True
    if step is None:
        raise ValueError(f"cwg_warmup_steps={warmup_steps} needs the global training step, got step=None")
    return step >= warmup_steps
