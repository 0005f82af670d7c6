"""All attention-loss terms of one training step, from the loss layer's attention and the warped-garment mask."""

import torch

from i2am.losses.geometry import attention_centroids, check_attention, check_grid, query_mask
from i2am.losses.guards import attention_diagnostics, cwg_is_active, entropy_floor_loss
from i2am.losses.paper import cwg_loss, dcml_loss, tv_loss


def attention_losses(
    attn: torch.Tensor,
    warped_mask: torch.Tensor,
    grid: tuple[int, int],
    *,
    cwg_weight: float = 2.0,
    sigma: float = 1.0,
    tv_weight: float = 1e-4,
    dcml_weight: float = 0.01,
    cwg_warmup_steps: int = 0,
    entropy_floor: float = 0.0,
    entropy_floor_weight: float = 0.0,
    step: int | None = None,
) -> dict[str, torch.Tensor]:
    """CWG, TV, DCML (paper defaults) plus the optional entropy floor, their sum, and collapse diagnostics.

    attn: [B, Lq, hr, wr] head-averaged G2R probabilities at the loss layer (half precision is computed in fp32).
    warped_mask: [B, 1, H, W] warped-garment mask; grid: the query grid (hq, wq) with hq * wq = Lq.
    Guards (off by default, i.e. the paper): `cwg_warmup_steps` zeroes CWG before that global `step`;
    `entropy_floor_weight * mean_masked relu(entropy_floor - H_j)` is added to the total.
    Returns "cwg", "tv", "dcml", "entropy_floor", "total" (differentiable) and "attention_entropy",
    "attention_max_prob" (detached; NaN when the mask is empty).
    """
    check_attention(attn, "attention_losses")
    check_grid(grid, attn.shape[1], "attention_losses")
    if attn.dtype in (torch.float16, torch.bfloat16):
        attn = attn.float()
    mask = query_mask(warped_mask, grid)
    centroids = attention_centroids(attn)
    zero = attn.new_zeros(())
    terms = {
        "cwg": cwg_loss(attn, mask, cwg_weight, sigma, centroids) if cwg_is_active(step, cwg_warmup_steps) else zero,
        "tv": tv_loss(centroids, mask, grid, tv_weight),
        "dcml": dcml_loss(centroids, mask, grid, dcml_weight),
        "entropy_floor": entropy_floor_loss(attn, mask, entropy_floor, entropy_floor_weight)
        if entropy_floor_weight > 0
        else zero,
    }
    terms["total"] = terms["cwg"] + terms["tv"] + terms["dcml"] + terms["entropy_floor"]
    return terms | attention_diagnostics(attn, mask)
