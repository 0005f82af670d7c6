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

    def tiles():
        return _probability_tiles(a, kt, lse, bias, chunk, tile, workspace)

    readings: list[_Reading] = []
    if share:
        readings.append(_Share(r2g, g2r, sram, frames, lq))
    if own:
        own_r2g = None
        if r2g:
            kept = None if bias is None else (bias == 0)[:, None, :]                    # [B, 1, Lk]
            e = torch.exp(lse - lse.amax(-1, keepdim=True))                              # [..., Lq]
            own_r2g = _OwnR2G.columns_first(tiles(), e, kept) if lq > chunk else _OwnR2G(e, kept)
        readings.append(_Own(own_r2g, whole_rows, g2r, sram, frames, lq))
    for sub, probs in tiles():
        weight = None if query_weight is None else query_weight[..., sub]
        row_mass = None if whole_rows and not share else probs.sum(-1)   # Σ_i P[j, i]: [..., c]
        weight_rows = {}   # name -> [..., n, c]: each reading's rows of this tile's one column-sum matmul
        for reading in readings:
            weight_rows |= reading.take(sub, probs, weight, row_mass)
        column_sums = _column_sums(probs, weight_rows)
        for reading in readings:
            reading.add(column_sums)
    return {reading.name: reading.scores() for reading in readings}


class _Reading:
    """One reading of P, gathered tile by tile (``take``): R2G and SRAM a part per tile, G2R the sum of the tiles'
    column sums (``add``) of the weight rows it names after itself."""

    name: str   # in the readings segment_scores returns, and of its G2R weight rows

    def __init__(self, r2g: bool, g2r: bool, sram: bool, frames: int, lq: int):
        self.r2g, self.g2r, self.sram, self.frames, self.lq = r2g, g2r, sram, frames, lq
        self.r2g_parts: list[torch.Tensor] = []
        self.sram_parts: list[torch.Tensor] = []
        self.g2r_sum = 0

    def take(self, sub: slice, probs: torch.Tensor, weight: torch.Tensor | None,
             row_mass: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """Keeps what the tile ``probs`` of the queries ``sub`` (their weights ``weight``, row masses ``row_mass``)
        gives at once; returns the weight rows (``_column_sums``) of the column sums it needs from the tile."""
        raise NotImplementedError

    def g2r_rows(self, weight: torch.Tensor | None, sub: slice, probs: torch.Tensor) -> dict:
        return {self.name: frame_weights(weight, self.frames, sub, self.lq, probs)} if self.g2r else {}

    def add(self, column_sums: dict[str, torch.Tensor]) -> None:
        if self.g2r:   # one row per frame
            column = column_sums[self.name]
            self.g2r_sum = self.g2r_sum + (column[..., 0, :] if self.frames == 1 else column)

    def scores(self) -> dict[str, torch.Tensor] | None:
        scores = {}
        if self.r2g:
            scores["r2g"] = torch.cat(self.r2g_parts, dim=-1)
        if self.g2r:
            scores["g2r"] = self.g2r_sum
        if self.sram:
            scores["sram"] = torch.cat(self.sram_parts, dim=-2)
        return scores


class _Share(_Reading):
    """P itself: each query's mass on these keys out of its whole row."""

    name = "share"

    def take(self, sub, probs, weight, row_mass):
        if self.r2g:
            self.r2g_parts.append(row_mass)
        if self.sram:
            self.sram_parts.append(probs.mean(-3))
        return self.g2r_rows(weight, sub, probs)


class _Own(_Reading):
    """The softmaxes over these keys alone (``spatial_scores``) from P: G2R and SRAM divide each row P[j, :] by its
    mass r_j (1 when ``whole_rows``); R2G is ``_OwnR2G``. ``scores`` is None when fp32 would lose entries of P / r (a
    row mass below 1e-25) or of R2G."""

    name = "own"

    def __init__(self, own_r2g: _OwnR2G | None, whole_rows: bool, g2r: bool, sram: bool, frames: int, lq: int):
        super().__init__(own_r2g is not None, g2r, sram, frames, lq)
        self.own_r2g, self.whole_rows = own_r2g, whole_rows
        self.smallest_rows: list[torch.Tensor] = []   # each tile's least row mass, checked once at the end

    def take(self, sub, probs, weight, row_mass):
        rows = {} if self.own_r2g is None else self.own_r2g.take(sub, probs)
        if self.whole_rows:
            row_mass = None
        elif self.g2r or self.sram:
            self.smallest_rows.append(row_mass.amin())
        if self.g2r:   # G2R: 1 / r_j folded into the query weights
            own_weight = weight if row_mass is None else (1.0 / row_mass if weight is None else weight / row_mass)
            rows |= self.g2r_rows(own_weight, sub, probs)
        if self.sram:   # the SRAM needs the normalised rows themselves
            self.sram_parts.append((probs if row_mass is None else probs / row_mass[..., None]).mean(-3))
        return rows

    def add(self, column_sums):
        if self.own_r2g is not None:
            self.own_r2g.add(column_sums)
        super().add(column_sums)

    def scores(self):
        if self.own_r2g is not None:
            self.r2g_parts = self.own_r2g.finish()
            if self.r2g_parts is None:
                return None
        if self.smallest_rows and not bool(torch.stack(self.smallest_rows).amin() > _SMALLEST_COLUMN):
            return None
        return super().scores()


class _OwnR2G:
    """The own reading's R2G, e_j Σ_i P[j, i] t_i with e_j = exp(lse_j - max lse) and the token weights
    t_i = 1 / (n Σ_j' e_j' P[j', i]) (``_token_weight``), which need every query's column sums before any query's
    score. When the queries take several chunks, a first pass over all of them sums the columns (``columns_first``)
    and each tile of the second gives its scores at once; with one chunk the column sums join the pass's own matmul
    and the chunk's tiles, all still in its block, give their scores at the end (``finish``)."""

    def __init__(self, e: torch.Tensor, kept: torch.Tensor | None,
                 token_weight: torch.Tensor | bool | None = None):
        self.e, self.kept = e, kept
        self.token_weight = token_weight   # None: from this pass's column sums; False: fp32 lost a column sum
        self.columns, self.tiles, self.parts = 0, [], []

    @classmethod
    def columns_first(cls, tiles, e: torch.Tensor, kept: torch.Tensor | None) -> _OwnR2G:
        columns = 0
        for sub, probs in tiles:
            columns = columns + _column_sums(probs, {"token": e[..., None, sub]})["token"][..., 0, :]
        return cls(e, kept, _token_weight(columns, kept))

    def take(self, sub: slice, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.token_weight is None:
            self.tiles.append((sub, probs))
            return {"token": self.e[..., None, sub]}
        if self.token_weight is not False:
            self.parts.append(self._score(sub, probs))
        return {}

    def add(self, column_sums: dict[str, torch.Tensor]) -> None:
        if "token" in column_sums:
            self.columns = self.columns + column_sums["token"][..., 0, :]

    def finish(self) -> list[torch.Tensor] | None:
        """The scores of each tile, or None when fp32 lost a column sum."""
        if self.token_weight is None:
            self.token_weight = _token_weight(self.columns, self.kept)
            if self.token_weight is not False:
                self.parts = [self._score(sub, probs) for sub, probs in self.tiles]
        return None if self.token_weight is False else self.parts

    def _score(self, sub: slice, probs: torch.Tensor) -> torch.Tensor:
        return self.e[..., sub] * row_dot(probs, self.token_weight)


def _probability_tiles(a: torch.Tensor, kt: torch.Tensor, lse: torch.Tensor, bias: torch.Tensor | None, chunk: int,
                       tile: int | None, workspace: Workspace | None):
    """P = exp(logit - lse) of all queries, one block per chunk of ``chunk`` queries (in ``workspace`` when given),
    each formed ``tile`` logits at a time (``_mass_tiles``; default: ``CPU_TILE`` on a CPU running one torch thread,
    else the whole chunk): yields each (its queries, the tile)."""
    lead = torch.broadcast_shapes(a.shape[:-2], kt.shape[:-2])
    row = math.prod(lead) * kt.shape[-1]   # logits per query
    if tile is None:
        tile = CPU_TILE if a.device.type == "cpu" and torch.get_num_threads() == 1 else row * chunk
    step = max(1, tile // row)
    new_block = torch.empty if workspace is None else workspace.block
    for part in _rows(a.shape[-2], chunk):
        block = new_block(((part.stop - part.start) * row,), dtype=a.dtype, device=a.device)
        yield from _mass_tiles(a, kt, lse, bias, part, block, step)


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
