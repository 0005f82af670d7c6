"""Video AttributionMaps built from known per-step distributions (no model), for the video-map contract
(docs/video_maps.md): per layer and step an R2G distribution over (F, h, w) and per frame a G2R distribution over a
row of reference tokens."""
from __future__ import annotations

import torch

from i2am.engine import AttributionMaps

STEPS, GROUPS, HEADS, FRAMES = 4, 2, 2, 3
GRIDS = {"blocks.0.attn2": (4, 6), "blocks.1.attn2": (2, 3)}   # (h, w) per layer; the same frame count
REF = (1, 5)


def video_maps(batch: int = 2, seed: int = 0) -> tuple[AttributionMaps, dict]:
    """Per layer and step, an R2G distribution over (F, h, w) and per frame a G2R distribution over REF."""
    g = torch.Generator().manual_seed(seed)
    raw, layers, steps = {}, [], {}
    for name, (h, w) in GRIDS.items():
        r2g = torch.softmax(torch.randn(batch, STEPS, HEADS, FRAMES * h * w, generator=g) * 2, -1)
        g2r = torch.softmax(torch.randn(batch, STEPS, HEADS, FRAMES, REF[1], generator=g) * 2, -1)
        steps[name] = r2g.reshape(batch, STEPS, HEADS, FRAMES, h, w)
        raw[f"r2g/{name}"] = steps[name].reshape(batch, GROUPS, STEPS // GROUPS, HEADS, FRAMES, h, w).sum(2)
        raw[f"g2r/{name}"] = g2r.reshape(batch, GROUPS, STEPS // GROUPS, HEADS, FRAMES, *REF).sum(2)
        layers.append({"name": name, "group": "transformer", "heads": HEADS, "query_grid": [FRAMES, h, w],
                       "ref_grid": list(REF), "degenerate_g2r": False, "relation": "image:reference"})
    meta = {"model": "synthetic-video", "num_steps": STEPS, "time_groups": GROUPS, "steps_seen": STEPS,
            "layers": layers, "r2g_grid": None, "g2r_grid": None, "family_layers": {}}
    return AttributionMaps(raw, meta), steps
