"""Toy-only positive control: supervise G2R attention with the toy world's ground-truth correspondence.

Not part of the paper. The toy world knows, for every person pixel, which garment pixel it shows
(`i2am.data.schema.CORRESPONDENCE`); a model trained with this loss provably uses that correspondence, so an
attribution engine must recover it (docs/toy_world.md).
"""

import torch
import torch.nn.functional as F

from i2am.losses.geometry import check_attention, check_query_mask
from i2am.losses.guards import masked_mean


@torch.no_grad()
def correspondence_targets(
    correspondence: torch.Tensor,
    cloth_size: tuple[int, int],
    query_grid: tuple[int, int],
    ref_grid: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query true reference cell from a correspondence map.

    correspondence: [B, 2, H, W] source garment pixel (row, col) on the cloth image of size `cloth_size` (Hc, Wc)
    per person pixel, -1 where the garment does not cover it.
    Each query cell of `query_grid` (hq, wq) pools the person pixels it covers (area average, as
    `adaptive_avg_pool2d`): it is valid when at least half of them are covered, and its source is the mean source
    pixel of the covered ones. Pixel (r, c) has its centre at (r + 0.5, c + 0.5); the reference grid `ref_grid`
    (hr, wr) tiles the whole cloth image uniformly, as DINOv2 patches tile the resized cloth.
    Returns target_cells [B, hq*wq] long (raster index y * wr + x on the reference grid) and valid [B, hq*wq] bool.
    """
    if correspondence.dim() != 4 or correspondence.shape[1] != 2:
        raise ValueError(
            f"correspondence_targets: correspondence must be [B, 2, H, W], got {tuple(correspondence.shape)}"
        )
    covered = (correspondence >= 0).all(dim=1, keepdim=True).to(torch.float64)
    coverage = F.adaptive_avg_pool2d(covered, query_grid)
    source_sum = F.adaptive_avg_pool2d(correspondence.to(torch.float64) * covered, query_grid)
    source = source_sum / coverage.clamp_min(1e-12)  # [B, 2, hq, wq] mean source pixel of covered pixels
    hc, wc = cloth_size
    hr, wr = ref_grid
    cell_y = ((source[:, 0] + 0.5) * hr / hc).floor().long().clamp(0, hr - 1)
    cell_x = ((source[:, 1] + 0.5) * wr / wc).floor().long().clamp(0, wr - 1)
    targets = (cell_y * wr + cell_x).flatten(1)
    valid = (coverage[:, 0] >= 0.5).flatten(1)
    return targets, valid


def correspondence_ce_loss(
    attn: torch.Tensor, target_cells: torch.Tensor, valid: torch.Tensor, weight: float = 1.0
) -> torch.Tensor:
    """weight * mean over valid queries of -log A_j(target_j): cross-entropy of the head-averaged G2R probabilities.

    attn [B, Lq, hr, wr] probabilities (log of p clamped to the dtype's smallest normal), target_cells [B, Lq] raster
    indices on the reference grid, valid [B, Lq] bool. Zero when no query is valid.
    """
    check_attention(attn, "correspondence_ce_loss")
    b, lq = attn.shape[:2]
    check_query_mask(valid, b, lq, "correspondence_ce_loss")
    check_query_mask(target_cells, b, lq, "correspondence_ce_loss (target_cells)")
    p = attn.flatten(-2)
    target_prob = p.gather(-1, target_cells.clamp_min(0)[..., None]).squeeze(-1)
    nll = -target_prob.clamp_min(torch.finfo(p.dtype).tiny).log()
    return weight * masked_mean(nll, valid)
