"""Bidirectional attention scores (docs/method.md §2.2, Appendix A step 1), as pure functions.

q: [..., Lq, d] and k: [..., Lk, d] are the per-head queries and keys of one cross-attention call (any leading batch
and head dims). Logits are q·kᵀ·d^-1/2 in float32.

- R2G ("generated" map): softmax over the query axis (dim -2) for each reference token, then the mean over tokens.
  With one reference token the logits are a [..., Lq] vector: no Lq×Lk matrix is formed.
- G2R ("reference" map): the ordinary softmax over reference tokens (dim -1), then the (optionally weighted) sum over
  query positions. Spatial tokens are processed in query chunks of bounded size.
- SRAM: the full G2R probabilities [Lq, Lk]; its columns are DAAM's per-token heat maps
  (``AttributionMaps.daam_word_maps``).
"""
from __future__ import annotations

import math

import torch

from i2am.engine.workspace import Workspace

# The least column sum Σ_j P[j, i] w_j for which entries 1e-5 of it stay normal fp32 numbers (min normal ~1.2e-38).
_SMALLEST_COLUMN = 1e-25
# On a CPU running one torch thread, a block formed from the attention kernel's log-sum-exp (``segment_scores``) is
# formed CPU_TILE logits (4 MiB) at a time, so that the passes after the matmul (exp, row and column sums) read the
# cache, not memory: on SD-1.5's largest cross-attention layer ([8, 3072, 1036], 100 MiB) they took as long as the
# matmul when each read the whole block. With several threads every pass over a tile is a parallel region whose end
# waits for all of them; on a CPU shared with other jobs a descheduled thread makes each wait cost milliseconds, which
# outweighed the cache (docs/results.md, "Capture speed"), so there a chunk stays one tile.
CPU_TILE = 2 ** 20


def _logits(q: torch.Tensor, k: torch.Tensor, scale: float, workspace: Workspace | None = None) -> torch.Tensor:
    """q·kᵀ·scale in fp32; written into ``workspace`` (valid until its next block) when given."""
    a, b = q.float() * scale, k.float().transpose(-1, -2)
    return torch.matmul(a, b) if workspace is None else workspace.matmul(a, b)


def row_dot(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``matrix`` [..., n, m] times ``vector`` [..., m] -> [..., n], computed as vectorᵀ · matrixᵀ: on a CPU, MKL's
    matrix-vector product over the transposed view runs several times faster than the one-column matrix product
    ``matrix @ vector[..., None]``."""
    return torch.matmul(vector.unsqueeze(-2), matrix.transpose(-1, -2)).squeeze(-2)


def r2g_single_token(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """R2G for one reference token: k [..., 1, d] -> [..., Lq]."""
    logits = (q.float() * k.float()).sum(-1) * scale
    return torch.softmax(logits, dim=-1)


def key_statistics(q: torch.Tensor, k: torch.Tensor, scale: float, chunk: int,
                   workspace: Workspace | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per reference token i, over all query positions j: m_i = max_j logit[j, i] and s_i = Σ_j exp(logit[j, i] - m_i),
    accumulated over query chunks with the usual running-max rescaling. Both [..., Lk]."""
    m = s = None
    for start in range(0, q.shape[-2], chunk):
        logits = _logits(q[..., start:start + chunk, :], k, scale, workspace)
        chunk_max = logits.amax(-2)
        new_max = chunk_max if m is None else torch.maximum(m, chunk_max)
        part = logits.sub_(new_max.unsqueeze(-2)).exp_().sum(-2)
        s = part if s is None else s * torch.exp(m - new_max) + part
        m = new_max
    return m, s


def _r2g_from(shifted_exp: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """mean_i exp(logit[j, i] - m_i) / s_i, from exp(logit - m) of a chunk of queries."""
    return row_dot(shifted_exp, 1.0 / (s * s.shape[-1]))


def _rows(length: int, chunk: int) -> list[slice]:
    return [slice(a, min(a + chunk, length)) for a in range(0, length, chunk)]


def segment_scores(q: torch.Tensor, k: torch.Tensor, scale: float, lse: torch.Tensor, *, chunk: int,
                   r2g: bool = True, g2r: bool = True, sram: bool = False, query_weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None, own: bool = True, share: bool = False, whole_rows: bool = False,
                   frames: int = 1, workspace: Workspace | None = None,
                   tile: int | None = None) -> dict[str, dict[str, torch.Tensor] | None]:
    """Scores of the keys ``k`` [..., Lk, d] when each query's log-sum-exp ``lse`` [..., Lq] over all the keys it
    attends to is known (the attention kernel's own), in chunks of ``chunk`` queries. P = exp(logit - lse) is each
    query's attention mass on each of these keys; one logits block per chunk serves both readings:

    "share"  the mass out of the query's whole row: "r2g" [..., Lq] Σ_i P[j, i], "g2r" [..., Lk] Σ_j w_j P[j, :],
             "sram" [..., Lq, Lk] P (heads, dim -3, averaged);
    "own"    ``spatial_scores`` (the softmax over these keys alone): its G2R softmax is P[j, :] / r_j with the row
             mass r_j = Σ_i P[j, i] (1 when ``whole_rows``: the lse is over exactly these keys), and the softmax over
             queries of key i is e_j P[j, i] / Σ_j' e_j' P[j', i] with e_j = exp(lse_j - max lse), so R2G is two
             mat-vecs over P (over two passes when the queries take several chunks: the column sums first).

    w = ``query_weight`` [..., Lq] or 1; ``bias`` [B, Lk] (0 or -inf): keys a sample may not attend to (they take no
    mass and leave the R2G mean). ``frames`` > 1: the queries are that many frames of equal size (a video), and
    each "g2r" is [..., frames, Lk], the sum over each frame's queries (as ``spatial_scores``).
    Returns {"share": ..., "own": ...} as requested; "own" is None when fp32 would lose entries (a row mass or a
    token's column sum below 1e-25): the caller then recomputes it from the logits.
    A chunk's block is formed ``tile`` logits at a time (default: ``CPU_TILE`` on a CPU running one torch thread,
    else the whole chunk) and every reduction that needs only those rows reads them at once; all column sums of a
    tile are one matmul."""
    lse = lse.float()   # the logits are fp32 whatever the kernel's precision
    lq = q.shape[-2]
    if lq % frames:
        raise ValueError(f"{lq} queries do not split into {frames} frames of equal size")
    a, kt = q.float() * scale, k.float().transpose(-1, -2)
    lead = torch.broadcast_shapes(a.shape[:-2], kt.shape[:-2])
    rows, lk = _rows(lq, chunk), kt.shape[-1]
    row = math.prod(lead) * lk   # logits per query
    if tile is None:
        tile = CPU_TILE if a.device.type == "cpu" and torch.get_num_threads() == 1 else row * chunk
    step = max(1, tile // row)
    kept = None if bias is None else (bias == 0)[:, None, :]                        # [B, 1, Lk]

    def masses(part: slice):
        block = (torch.empty if workspace is None else workspace.block)(((part.stop - part.start) * row,),
                                                                      dtype=a.dtype, device=a.device)
        return _mass_tiles(a, kt, lse, bias, part, block, step)

    e = torch.exp(lse - lse.amax(-1, keepdim=True)) if own and r2g else None       # [..., Lq]
    token_weight = None
    if e is not None and len(rows) > 1:   # several chunks: every key's column sum first
        columns = 0
        for part in rows:
            for sub, probs in masses(part):
                columns = columns + _column_sums(probs, {"token": e[..., None, sub]})["token"][..., 0, :]
        token_weight = _token_weight(columns, kept)
    sums = {"share": {"r2g": [], "g2r": 0, "sram": []}, "own": {"r2g": [], "g2r": 0, "sram": []}}
    smallest_rows = []   # of the own readings' row masses, checked once at the end
    for part in rows:
        token_columns = 0 if e is not None and token_weight is None else None   # one chunk: its column sums
        tiles = []   # this chunk's, kept for R2G's last mat-vec when it needs all of them first
        for sub, probs in masses(part):
            if token_columns is not None:
                tiles.append((sub, probs))
            weight = None if query_weight is None else query_weight[..., sub]
            row_mass = None if whole_rows and not share else probs.sum(-1)               # [..., c]
            columns = {}   # reading -> its weight rows [..., n, c] over this tile's queries, for the column sums
            if share:
                if r2g:
                    sums["share"]["r2g"].append(row_mass)
                if g2r:
                    columns["share"] = frame_weights(weight, frames, sub, lq, probs)
                if sram:
                    sums["share"]["sram"].append(probs.mean(-3))
            if own:
                if token_columns is not None:
                    columns["token"] = e[..., None, sub]
                elif e is not None and token_weight is not False:
                    sums["own"]["r2g"].append(e[..., sub] * row_dot(probs, token_weight))
                own_rows = None if whole_rows else row_mass
                if own_rows is not None and (g2r or sram):
                    smallest_rows.append(own_rows.amin())
                if g2r:   # G2R: 1 / r_j folded into the query weights
                    own_weight = weight if own_rows is None else (1.0 / own_rows if weight is None
                                                                  else weight / own_rows)
                    columns["own"] = frame_weights(own_weight, frames, sub, lq, probs)
                if sram:   # the SRAM needs the normalised rows themselves
                    sums["own"]["sram"].append((probs if own_rows is None else probs / own_rows[..., None]).mean(-3))
            for reading, column in _column_sums(probs, columns).items():
                if reading == "token":
                    token_columns = token_columns + column[..., 0, :]
                else:   # one row per frame
                    sums[reading]["g2r"] = sums[reading]["g2r"] + (column[..., 0, :] if frames == 1 else column)
        if token_columns is not None:
            token_weight = _token_weight(token_columns, kept)
            if token_weight is not False:   # the tiles of this one chunk are all still in the workspace
                sums["own"]["r2g"] += [e[..., sub] * row_dot(probs, token_weight) for sub, probs in tiles]
    rows_kept = not smallest_rows or bool(torch.stack(smallest_rows).amin() > _SMALLEST_COLUMN)
    own_exact = token_weight is not False and rows_kept
    out = {}
    for reading, wanted in (("share", share), ("own", own)):
        if not wanted:
            continue
        if reading == "own" and not own_exact:
            out["own"] = None
            continue
        parts, scores = sums[reading], {}
        if r2g:
            scores["r2g"] = torch.cat(parts["r2g"], dim=-1)
        if g2r:
            scores["g2r"] = parts["g2r"]
        if sram:
            scores["sram"] = torch.cat(parts["sram"], dim=-2)
        out[reading] = scores
    return out


def _mass_tiles(a: torch.Tensor, kt: torch.Tensor, lse: torch.Tensor, bias: torch.Tensor | None, part: slice,
                block: torch.Tensor, step: int):
    """exp(logit - lse) of the queries ``part`` (a · kt, plus ``bias``) written into the flat ``block``, ``step``
    queries at a time, each tile a contiguous [..., rows, Lk] (a matmul into a strided slice of one [..., Lq, Lk]
    block runs a call per head: with two threads on a loaded CPU, several times slower); yields each (its queries,
    the tile) as soon as it is formed, while it is in cache."""
    lead = torch.broadcast_shapes(a.shape[:-2], kt.shape[:-2])
    row = block.numel() // (part.stop - part.start)
    for start in range(part.start, part.stop, step):
        sub = slice(start, min(start + step, part.stop))
        offset = (sub.start - part.start) * row
        probs = block[offset:offset + (sub.stop - sub.start) * row].view(*lead, sub.stop - sub.start, kt.shape[-1])
        torch.matmul(a[..., sub, :], kt, out=probs)
        if bias is not None:
            probs += bias[:, None, None, :]
        yield sub, probs.sub_(lse[..., sub, None]).exp_()


def _column_sums(probs: torch.Tensor, weights: dict) -> dict[str, torch.Tensor]:
    """Σ_j W[..., n, j] probs[..., j, :] for each named weight matrix W [..., n, c] (None: one row of ones), all in
    one matmul: [..., n, Lk] each."""
    if not weights:
        return {}
    *lead, count = probs.shape[:-1]
    ones = torch.ones((1, count), dtype=probs.dtype, device=probs.device)
    blocks = [(ones if w is None else w).expand(*lead, *(ones if w is None else w).shape[-2:])
              for w in weights.values()]
    sums = torch.matmul(torch.cat(blocks, dim=-2), probs)                                # [..., Σn, Lk]
    return dict(zip(weights, sums.split([b.shape[-2] for b in blocks], dim=-2)))


def _token_weight(columns: torch.Tensor, kept: torch.Tensor | None) -> torch.Tensor | bool:
    """1 / (n · column sum) of each key (0 for a key the sample may not attend to; n: the keys it may), or False
    when a column sum is too small for fp32 to keep its entries."""
    if kept is None:
        return False if not bool((columns > _SMALLEST_COLUMN).all()) else 1.0 / (columns * columns.shape[-1])
    if not bool((columns > _SMALLEST_COLUMN)[kept.expand_as(columns)].all()):
        return False
    count = kept.sum(-1, keepdim=True)
    return torch.where(kept, 1.0 / (columns * count), torch.zeros((), device=columns.device))


def g2r_part(probs: torch.Tensor, weight: torch.Tensor | None, frames: int, start: int, lq: int) -> torch.Tensor:
    """The G2R sum over the queries start.. of a chunk of key-softmax rows probs [..., c, Lk], weighted by the
    chunk's query weights ``weight`` [..., c] where given: [..., Lk], or [..., frames, Lk] per frame when the ``lq``
    queries are ``frames`` consecutive equal blocks (a video's (frame, h, w) grid)."""
    if frames == 1:
        if weight is None:
            return probs.sum(-2)
        return torch.matmul(weight.unsqueeze(-2), probs).squeeze(-2)
    return torch.matmul(frame_weights(weight, frames, slice(start, start + probs.shape[-2]), lq, probs), probs)


def frame_weights(weight: torch.Tensor | None, frames: int, queries: slice, lq: int,
                  like: torch.Tensor) -> torch.Tensor | None:
    """The weight rows of the G2R sums over ``queries`` (of ``lq``): the query weights ``weight`` [..., c] as one row
    [..., 1, c] (None: all ones), or with ``frames`` > 1 one row per frame [..., frames, c], each the weights of that
    frame's queries and 0 elsewhere (the queries are ``frames`` consecutive equal blocks)."""
    if frames == 1:
        return None if weight is None else weight.unsqueeze(-2)
    frame_of = torch.arange(queries.start, queries.stop, device=like.device) // (lq // frames)
    per_frame = (frame_of == torch.arange(frames, device=like.device)[:, None]).to(like.dtype)   # [F, c]
    return per_frame if weight is None else per_frame * weight.unsqueeze(-2)


def spatial_scores(q: torch.Tensor, k: torch.Tensor, scale: float, *, chunk: int = 1024, r2g: bool = True,
                   g2r: bool = True, query_weight: torch.Tensor | None = None, sram: bool = False,
                   lse: torch.Tensor | None = None, frames: int = 1,
                   workspace: Workspace | None = None) -> dict[str, torch.Tensor]:
    """Scores for Lk >= 1 reference tokens, computed in chunks of ``chunk`` query positions.

    Returns a dict with any of
      "r2g":  [..., Lq]  mean over tokens of the softmax over queries,
      "g2r":  [..., Lk]  Σ_j w_j · softmax_keys(logits)[j, :]  (w = query_weight [..., Lq] or 1),
      "sram": [..., Lq, Lk] with the head axis (dim -3) averaged: the full G2R probabilities.
    The softmax over queries is written as exp(logit - m_i) / s_i with the per-token max m_i and sum s_i over all
    queries, so R2G costs one exp pass and a mat-vec. When all queries fit in one chunk the logits are computed once;
    otherwise a first pass gathers (m, s) and the second recomputes each chunk's logits.
    ``lse`` [..., Lq]: each query's log-sum-exp over these keys where it is known (the attention kernel's own): the
    scores then come from exp(logit - lse) (``segment_scores``), recomputed as above only where fp32 would lose
    entries of it.
    ``frames`` > 1: the queries are that many frames of equal size, one after the other (video); "g2r" is then
    [..., frames, Lk], the sum over each frame's queries (R2G stays the softmax over all queries of the video).
    ``workspace``: where the logits blocks are formed (``i2am.engine.workspace``), else fresh tensors.
    """
    lq = q.shape[-2]
    if lq % frames:
        raise ValueError(f"{lq} queries do not split into {frames} frames of equal size")
    if lse is not None:
        out = segment_scores(q, k, scale, lse, chunk=chunk, r2g=r2g, g2r=g2r, sram=sram, query_weight=query_weight,
                             whole_rows=True, frames=frames, workspace=workspace)["own"]
        if out is not None:
            return out
    single = lq <= chunk
    stats = key_statistics(q, k, scale, chunk, workspace) if r2g and not single else None
    r2g_parts, sram_parts, g2r_sum = [], [], None
    for start in range(0, lq, chunk):
        logits = _logits(q[..., start:start + chunk, :], k, scale, workspace)
        if g2r or sram:
            probs = torch.softmax(logits, dim=-1)
            if g2r:
                weight = None if query_weight is None else query_weight[..., start:start + probs.shape[-2]]
                part = g2r_part(probs, weight, frames, start, lq)
                g2r_sum = part if g2r_sum is None else g2r_sum + part
            if sram:
                sram_parts.append(probs.mean(-3))
        if r2g:   # in place: the logits are not needed any more
            m = logits.amax(-2) if single else stats[0]
            shifted_exp = logits.sub_(m.unsqueeze(-2)).exp_()
            r2g_parts.append(_r2g_from(shifted_exp, shifted_exp.sum(-2) if single else stats[1]))
    out: dict[str, torch.Tensor] = {}
    if r2g:
        out["r2g"] = torch.cat(r2g_parts, dim=-1)
    if g2r:
        out["g2r"] = g2r_sum
    if sram:
        out["sram"] = torch.cat(sram_parts, dim=-2)
    return out


def split_heads(attn, q: torch.Tensor, k: torch.Tensor, norms: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A diffusers ``Attention`` layer's projected q [B, Lq, h·d] and k [B, Lk, h·d] as the per-head tensors its
    processor attends with, [B, h, Lq, d] and [B, h, Lk, d]: channels split into ``attn.heads`` consecutive blocks,
    then the layer's optional per-head q/k norms (docs/method.md Appendix A step 1); ``norms=False`` for q and k
    read after the layer's own norms (Wan normalises across heads, before the split)."""
    batch, heads = q.shape[0], attn.heads
    q = q.reshape(batch, q.shape[1], heads, -1).transpose(1, 2)
    k = k.reshape(batch, k.shape[1], heads, -1).transpose(1, 2)
    if not norms:
        return q, k
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    return q, k


def accumulate(acc: dict, key, kind: str, value: torch.Tensor, group: int, time_groups: int, owner: str) -> None:
    """Add one call's scores into the run's fp32 accumulator ``acc[key]``, created on first use.

    R2G and G2R scores [B, heads, n] are kept per time group ([B, groups, heads, n], ``group`` = this call's);
    SRAM scores [B, lq, lk] are summed over all steps. ``owner`` (a layer or block name) names the fault when the
    batch size changes within one capture.
    """
    total = acc.get(key)
    if total is None:
        shape = value.shape if kind == "sram" else (value.shape[0], time_groups, *value.shape[1:])
        total = acc[key] = torch.zeros(shape, dtype=torch.float32, device=value.device)
    elif total.shape[0] != value.shape[0]:
        raise RuntimeError(f"{owner}: batch changed from {total.shape[0]} to {value.shape[0]} within one capture; "
                           f"call reset() between batches")
    if kind == "sram":
        total.add_(value)
    else:
        total[:, group].add_(value)
