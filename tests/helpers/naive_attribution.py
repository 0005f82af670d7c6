"""A deliberately naive I2AM reference for the engine tests: it materialises the full attention logits of every hooked
layer at every step with diffusers' own ``Attention`` projections, keeps them all, and builds the families with loops
straight from docs/method.md §3.2 / Appendix A. Slow and memory-hungry by design; never used outside tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0


class RecordingProcessor(AttnProcessor2_0):
    """The default diffusers processor (so the forward pass is bit-identical to an uncaptured one), plus a copy of
    the float64 logits [B*heads, Lq, Lk] of each call recomputed with the layer's own projections."""

    def __init__(self, store: list):
        super().__init__()
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        q = attn.head_to_batch_dim(attn.to_q(hidden_states)).double()
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states)).double()
        self.store.append((q @ k.transpose(1, 2)) * attn.scale)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def record(unet, names, run_steps):
    """Install recording processors on ``names``, call ``run_steps()``, restore; -> {name: [logits per step]}."""
    modules = dict(unet.named_modules())
    stores = {n: [] for n in names}
    originals = {n: modules[n].processor for n in names}
    for n in names:
        modules[n].set_processor(RecordingProcessor(stores[n]))
    try:
        run_steps()
    finally:
        for n in names:
            modules[n].set_processor(originals[n])
    return stores


def conditional(logits, heads, layout):
    """Logits [Bt*heads, Lq, Lk] -> [B, heads, Lq, Lk] of the conditional chunk."""
    x = logits.reshape(-1, heads, *logits.shape[1:])
    if layout == "none":
        return x
    u, c = x.chunk(2)
    return c if layout == "uncond_cond" else u


def resize(x, size):
    if tuple(x.shape[-2:]) == tuple(size):
        return x.clamp(min=0)
    return F.interpolate(x[None, None].double(), size=size, mode="bicubic", align_corners=False)[0, 0].clamp(min=0)


def families(stores, grids, heads, num_steps, time_groups, direction, common, layout="none", region=None):
    """{family: tensor} for one direction, built step by step, layer by layer, head by head.

    grids: {name: (query_grid, ref_grid)}; region: optional [B, Lq] weights per layer name for G2R.
    """
    names = list(stores)
    batch = conditional(stores[names[0]][0], heads, layout).shape[0]
    n_groups = time_groups
    per = {}  # name -> [B, G, N, h, w] sums
    for n in names:
        (qh, qw), (rh, rw) = grids[n]
        acc = None
        for step, logits in enumerate(stores[n]):
            x = conditional(logits, heads, layout)                       # [B, N, Lq, Lk]
            if direction == "r2g":
                m = torch.softmax(x, dim=-2).mean(-1).reshape(batch, heads, qh, qw)
            else:
                p = torch.softmax(x, dim=-1)
                if region is not None:
                    p = p * region[n][:, None, :, None]
                m = p.mean(-2).reshape(batch, heads, rh, rw)
            if acc is None:
                acc = torch.zeros(batch, n_groups, *m.shape[1:], dtype=torch.float64)
            acc[:, step * time_groups // num_steps] += m
        per[n] = acc
    out = {"ulam": [], "tlam": [], "hlam": [], "llam": []}
    for b in range(batch):
        ulam_maps, llam, hlam_maps = [], [], [[] for _ in range(heads)]
        tlam_maps = [[] for _ in range(n_groups)]
        for n in names:
            layer_maps = []
            for h in range(heads):
                full = resize(per[n][b, :, h].sum(0), common)
                ulam_maps.append(full)
                hlam_maps[h].append(full)
                layer_maps.append(full)
                for g in range(n_groups):
                    tlam_maps[g].append(resize(per[n][b, g, h], common))
            llam.append(torch.stack(layer_maps).mean(0))
        out["ulam"].append(torch.stack(ulam_maps).mean(0))
        out["tlam"].append(torch.stack([torch.stack(t).mean(0) for t in tlam_maps]))
        out["hlam"].append(torch.stack([torch.stack(t).mean(0) for t in hlam_maps]))
        out["llam"].append(torch.stack(llam))
    return {k: torch.stack(v) for k, v in out.items()}
