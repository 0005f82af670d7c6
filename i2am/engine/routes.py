"""Indirect routes from a reference image to the generated image in the joint attention of a diffusion transformer.

A generated token need not read a reference token directly: in a joint-attention editor the reference can first be
read by the text tokens, which the generated tokens then read. Two routes (docs/dit_editors.md, "Indirect routes"),
both on the full joint softmax of every query (the ``share`` normalisation), A = softmax(q kᵀ / √d) over all keys:

``twohop``  per block and head, the reference -> text -> generated route
            T[g, r] = Σ_t A[g, t] · A[t, r]   (g generated, t text, r reference tokens).
``rollout`` attention rollout (Abnar & Zuidema 2020) across the blocks of one transformer call, residual included:
            Â_l = 0.5 · mean_heads(A_l) + 0.5 · I, R_l = Â_l · R_(l-1), R_0 = I; each block's score is
            (0.5 · A_l^h + 0.5 · I) · R_(l-1) for head h (its head mean is R_l) on the rows g and columns r.
            Rows of Â_l sum to 1, so the row renormalisation of the definition is the identity here.

Reduced like the direct maps: "r2g" [B, heads, Lg] the route's mass on the reference per generated token, "g2r"
[B, heads, Lr] the (weighted) sum over generated tokens of the route's mass on each reference token, "sram"
[B, Lg, Lr] on request (heads averaged). No [L, L] matrix is formed: queries are processed in chunks. The two-hop
route needs the text rows' attention [B, heads, Lt, Lr] (few text tokens) and the generated rows' mass on text
keys; the rollout carries the exact column block R_l[:, reference] ([B, L, Lr] fp32, reset at every transformer
call: memory does not grow with the steps), so no path is dropped, including those through other reference tokens.
"""
from __future__ import annotations

import torch

from i2am.engine.kernel_stats import additive_mask
from i2am.engine.maps import AttributionMaps
from i2am.engine.packing import JointLayout, Segment
from i2am.engine.scores import row_dot

ROUTES = ("twohop", "rollout")


def route_relation(route: str, reference: Segment) -> str:
    """The relation name of a route's maps: "twohop:image:reference", "rollout:image:reference.1", ..."""
    return f"{route}:{reference.relation}"


def base_relation(relation: str) -> str:
    """The conditioning a relation's G2R map lives on: "image:reference" for "twohop:image:reference" and for
    "share:image:reference"."""
    head, _, rest = relation.partition(":")
    return rest if head in (*ROUTES, "share") else relation


def row_bias(attn_mask: torch.Tensor | None, rows: slice, length: int) -> torch.Tensor | None:
    """Additive fp32 bias (0 or -inf) of the query ``rows`` over all ``length`` keys, [B, 1 or heads, rows, L] (or
    broadcastable), from a backend mask: boolean (True = may attend) or additive, [B, L] or [B, 1|heads, 1|L, L]."""
    if attn_mask is None:
        return None
    mask = attn_mask[:, None, None, :] if attn_mask.dim() == 2 else attn_mask
    if mask.shape[-2] == length:
        mask = mask[..., rows, :]
    return additive_mask(mask).float()


def _mass(q: torch.Tensor, k: torch.Tensor, rows: slice, scale: float, attn_mask, lse=None,
          columns: slice = slice(None)) -> torch.Tensor:
    """A[rows, columns] of the full softmax over all keys: [B, heads, rows, columns] fp32. With ``lse`` [B, heads, L]
    (each query's log-sum-exp over all keys: the attention kernel's) only the [rows, columns] logits are formed,
    A = exp(logit - lse); without it the rows' full logits are softmaxed."""
    bias = row_bias(attn_mask, rows, k.shape[-2])
    keys = k if lse is None else k[:, :, columns]
    logits = torch.matmul(q[:, :, rows].float() * scale, keys.float().transpose(-1, -2))
    if bias is not None:
        logits += bias if lse is None else bias[..., columns]
    if lse is None:
        return torch.softmax(logits, dim=-1)[..., columns]
    return logits.sub_(lse[:, :, rows, None]).exp_()


def _row_chunks(segment_or_length, chunk: int):
    start, stop = ((0, segment_or_length) if isinstance(segment_or_length, int)
                   else (segment_or_length.start, segment_or_length.stop))
    for a in range(start, stop, chunk):
        yield slice(a, min(a + chunk, stop))


def _weighted_rows(part: torch.Tensor, weight: torch.Tensor | None, rows: slice, gen: Segment) -> torch.Tensor:
    """Σ over the chunk's generated rows (dim -2) of ``part``, weighted by ``weight`` [B, 1, Lg] when given."""
    if weight is None:
        return part.sum(-2)
    w = weight[..., rows.start - gen.start:rows.stop - gen.start]
    return torch.matmul(w[..., None, :], part).squeeze(-2)


def two_hop_scores(q: torch.Tensor, k: torch.Tensor, layout: JointLayout, references: list[Segment], scale: float,
                   chunk: int, *, attn_mask=None, weight: torch.Tensor | None = None, directions=("r2g", "g2r"),
                   sram: bool = False, lse: torch.Tensor | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The reference -> text -> generated route of one block (module docstring), per reference segment.

    q, k: [B, heads, L, d] of the joint attention; chunk: generated queries per chunk; weight: [B, 1, Lg] query weights
    of G2R (a region), None for all; lse: [B, heads, L] each query's log-sum-exp over all keys (the attention
    kernel's), so that only the text x reference and generated x text logits are formed. Returns relation ->
    {"r2g", "g2r", "sram"} as requested."""
    text = next(s for s in layout.segments if s.kind == "text")
    text_tokens = slice(text.start, text.stop)
    gen = layout.generated
    hops = {s.relation: _mass(q, k, text_tokens, scale, attn_mask, lse, slice(s.start, s.stop))
            for s in references}                                                     # [B, heads, Lt, Lr]
    text_mass = {rel: hop.sum(-1) for rel, hop in hops.items()}                      # [B, heads, Lt]
    r2g = {rel: [] for rel in hops}
    sram_parts = {rel: [] for rel in hops}
    gen_on_text = 0
    for rows in _row_chunks(gen, chunk):
        on_text = _mass(q, k, rows, scale, attn_mask, lse, text_tokens)               # [B, heads, c, Lt]
        gen_on_text = gen_on_text + _weighted_rows(on_text, weight, rows, gen)
        for rel, hop in hops.items():
            if "r2g" in directions:
                r2g[rel].append(row_dot(on_text, text_mass[rel]))
            if sram:
                sram_parts[rel].append(torch.matmul(on_text, hop).mean(-3))
    out = {}
    for seg in references:
        rel, scores = seg.relation, {}
        if "r2g" in directions:
            scores["r2g"] = torch.cat(r2g[rel], dim=-1)
        if "g2r" in directions:
            scores["g2r"] = torch.matmul(gen_on_text[..., None, :], hops[rel]).squeeze(-2)
        if sram:
            scores["sram"] = torch.cat(sram_parts[rel], dim=-2)
        out[route_relation("twohop", seg)] = scores
    return out


def rollout_start(batch: int, layout: JointLayout, references: list[Segment], device) -> torch.Tensor:
    """R_0[:, reference]: [B, L, Lr] with a one on each reference token's own row (references concatenated)."""
    state = torch.zeros(batch, layout.length, sum(s.length for s in references), device=device)
    column = 0
    for seg in references:
        idx = torch.arange(seg.length, device=device)
        state[:, seg.start + idx, column + idx] = 1.0
        column += seg.length
    return state


def rollout_scores(q: torch.Tensor, k: torch.Tensor, state: torch.Tensor, layout: JointLayout,
                   references: list[Segment], scale: float, chunk: int, *, attn_mask=None,
                   weight: torch.Tensor | None = None, directions=("r2g", "g2r"), sram: bool = False,
                   lse: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
    """One block of the attention rollout (module docstring): R_(l-1)[:, reference] ``state`` [B, L, Lr] -> R_l and,
    per reference segment, the block's head-resolved scores on the generated rows. Every query row is processed
    (chunk rows at a time): R_l needs them all."""
    gen = layout.generated
    columns, start = {}, 0
    for seg in references:
        columns[seg.relation] = slice(start, start + seg.length)
        start += seg.length
    row_mass = {rel: state[..., cols].sum(-1) for rel, cols in columns.items()}      # [B, L]
    new = torch.empty_like(state)
    r2g = {rel: [] for rel in columns}
    gen_cols, gen_state = 0, 0                        # Σ_g w_g A^h[g, :] and Σ_g w_g R_(l-1)[g, :]
    sram_parts = {rel: [] for rel in columns}
    for rows in _row_chunks(layout.length, chunk):
        probs = _mass(q, k, rows, scale, attn_mask, lse)                             # [B, heads, c, L]
        new[:, rows] = 0.5 * torch.matmul(probs.mean(1), state) + 0.5 * state[:, rows]
        lo, hi = max(rows.start, gen.start), min(rows.stop, gen.stop)
        if lo >= hi:
            continue
        local, inside = slice(lo - rows.start, hi - rows.start), slice(lo, hi)
        gen_probs = probs[:, :, local]
        gen_cols = gen_cols + _weighted_rows(gen_probs, weight, inside, gen)           # [B, heads, L]
        gen_state = gen_state + _weighted_rows(state[:, None, inside], weight, inside, gen)  # [B, 1, Lr]
        for rel, cols in columns.items():
            if "r2g" in directions:
                through = row_dot(gen_probs, row_mass[rel][:, None, :])
                r2g[rel].append(0.5 * through + 0.5 * row_mass[rel][:, None, inside])
            if sram:
                sram_parts[rel].append(new[:, inside, cols])
    out = {}
    for seg in references:
        rel, cols, scores = seg.relation, columns[seg.relation], {}
        if "r2g" in directions:
            scores["r2g"] = torch.cat(r2g[rel], dim=-1)
        if "g2r" in directions:
            scores["g2r"] = (0.5 * torch.matmul(gen_cols[..., None, :], state[:, None, :, cols]).squeeze(-2)
                             + 0.5 * gen_state[..., cols])
        if sram:
            scores["sram"] = torch.cat(sram_parts[rel], dim=-2)
        out[route_relation("rollout", seg)] = scores
    return new, out


class RouteRecorder:
    """The routes of one ``JointAttentionCapture``: ``start_call()`` at each scored transformer call (resets the
    rollout), ``record(...)`` per block in forward order -> relation -> scores to accumulate."""

    def __init__(self, routes):
        bad = [r for r in routes if r not in ROUTES]
        if bad:
            raise ValueError(f"routes {list(bad)}: choose any of {ROUTES}")
        self.routes = tuple(routes)
        self._state: torch.Tensor | None = None

    def start_call(self, layout: JointLayout) -> None:
        self._state = None
        kinds = {s.kind for s in layout.segments}
        if self.routes and not {"text", "reference"} <= kinds:
            raise ValueError(f"routes {list(self.routes)} need text and reference tokens in the joint attention; this "
                             f"call's segments are {[s.relation for s in layout.segments]}; capture without routes")
        if self.routes and (layout.per_sample or layout.generated.frames is not None):
            raise ValueError(f"routes {list(self.routes)} read contiguous image layouts; this call packs tokens at "
                             f"per-sample positions or generates a video; capture without routes")

    def record(self, q, k, layout: JointLayout, references: list[Segment], scale: float, chunk: int, *,
               attn_mask=None, weight=None, directions=("r2g", "g2r"), sram=False, lse=None) -> dict:
        out = {}
        options = dict(attn_mask=attn_mask, weight=weight, directions=directions, sram=sram, lse=lse)
        if "twohop" in self.routes:
            out.update(two_hop_scores(q, k, layout, references, scale, chunk, **options))
        if "rollout" in self.routes:
            if self._state is None:
                self._state = rollout_start(q.shape[0], layout, references, q.device)
            self._state, scores = rollout_scores(q, k, self._state, layout, references, scale, chunk, **options)
            out.update(scores)
        return out

    def state_bytes(self) -> int:
        return 0 if self._state is None else self._state.numel() * self._state.element_size()


def route_share(maps: AttributionMaps, reference: str = "image:reference") -> torch.Tensor:
    """[B] the two-hop route's share of the total reference mass reaching the generated tokens: Σ twohop R2G /
    (Σ twohop R2G + Σ direct R2G), sums over blocks, heads, steps and generated tokens; the direct mass is the
    ``share`` normalisation's (capture with normalisations including "share" and routes including "twohop")."""
    def total(relation):
        keys = [k for k in maps.raw if k.startswith(f"r2g/{relation}/")]
        if not keys:
            raise KeyError(f"route_share needs the r2g maps of {relation!r}; captured: "
                           f"{sorted({k.split('/')[1] for k in maps.raw})}")
        return sum(maps.raw[k].flatten(1).sum(1) for k in keys)

    two_hop, direct = total(f"twohop:{reference}"), total(f"share:{reference}")
    return two_hop / (two_hop + direct).clamp_min(torch.finfo(two_hop.dtype).tiny)
