"""AttributionMaps built from known per-step distributions (no model): two R2G layers at different grids, two G2R
layers, one SRAM layer, so that the unit of every view can be checked against a hand computation."""
from __future__ import annotations

import torch

from i2am.engine import AttributionMaps

STEPS, GROUPS, HEADS = 5, 2, 2          # steps 0-2 in group 0, steps 3-4 in group 1
GROUP_STEPS = [3, 2]
R2G_GRIDS = {"down.attn2": (4, 4), "up.attn2": (8, 8)}
REF_GRID = (6, 4)
SRAM_LAYER = "up.attn2"


def distributions(generator, *shape_and_grid) -> torch.Tensor:
    """Random probability distributions over the last two dims (a softmax per map)."""
    *lead, h, w = shape_and_grid
    logits = torch.randn(*lead, h * w, generator=generator) * 2
    return torch.softmax(logits, -1).reshape(*lead, h, w)


def per_group_sums(generator, batch: int, grid) -> torch.Tensor:
    """[B, G, N, h, w]: per time group, the sum over its steps of one distribution per step and head."""
    steps = distributions(generator, batch, STEPS, HEADS, *grid)
    groups = torch.tensor([s * GROUPS // STEPS for s in range(STEPS)])
    return torch.stack([steps[:, groups == g].sum(1) for g in range(GROUPS)], dim=1)


def synthetic_maps(batch: int = 2, seed: int = 0) -> AttributionMaps:
    g = torch.Generator().manual_seed(seed)
    raw, layers = {}, []
    for name, grid in R2G_GRIDS.items():
        raw[f"r2g/{name}"] = per_group_sums(g, batch, grid)
        raw[f"g2r/{name}"] = per_group_sums(g, batch, REF_GRID)
        layers.append({"name": name, "group": "unet", "heads": HEADS, "query_grid": list(grid),
                       "ref_grid": list(REF_GRID), "degenerate_g2r": False})
    lq, lk = R2G_GRIDS[SRAM_LAYER][0] * R2G_GRIDS[SRAM_LAYER][1], REF_GRID[0] * REF_GRID[1]
    raw[f"sram/{SRAM_LAYER}"] = torch.softmax(torch.randn(batch, STEPS, lq, lk, generator=g) * 2, -1).sum(1)
    meta = {"model": "synthetic", "num_steps": STEPS, "time_groups": GROUPS, "steps_seen": STEPS, "layers": layers,
            "r2g_grid": None, "g2r_grid": None, "family_layers": {}}
    return AttributionMaps(raw, meta)
