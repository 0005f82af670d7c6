"""Bidirectional attention scores (METHOD §2.2, Appendix A step 1), as pure functions.

q: [..., Lq, d] and k: [..., Lk, d] are the per-head queries and keys of one cross-attention call (any leading batch
and head dims). Logits are q·kᵀ·d^-1/2 in float32.

- R2G ("generated" map): softmax over the query axis (dim -2) for each reference token, then the mean over tokens.
  With one reference token the logits are a [..., Lq] vector: no Lq×Lk matrix is formed.
- G2R ("reference" map): the ordinary softmax over reference tokens (dim -1), then the (optionally weighted) sum over
  query positions. Spatial tokens are processed in query chunks of bounded size.
- DAAM (T2I-style baseline): the key-axis softmax averaged over reference tokens, on the query grid. It is constant
  (1/Lk) by construction; kept to show why T2I maps fail for image conditions (METHOD §5.4).
"""
from __future__ import annotations

import torch


def _logits(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale


def r2g_single_token(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """R2G for one reference token: k [..., 1, d] -> [..., Lq]."""
    logits = (q.float() * k.float()).sum(-1) * scale
    return torch.softmax(logits, dim=-1)


def query_logsumexp(q: torch.Tensor, k: torch.Tensor, scale: float, chunk: int) -> torch.Tensor:
    """log Σ_j exp(logit[j, i]) over all query positions j, per reference token i: [..., Lk]."""
    lse = None
    for start in range(0, q.shape[-2], chunk):
        part = torch.logsumexp(_logits(q[..., start:start + chunk, :], k, scale), dim=-2)
        lse = part if lse is None else torch.logaddexp(lse, part)
    return lse


def spatial_scores(q: torch.Tensor, k: torch.Tensor, scale: float, *, chunk: int = 1024, r2g: bool = True,
                   g2r: bool = True, query_weight: torch.Tensor | None = None, sram: bool = False,
                   daam: bool = False) -> dict[str, torch.Tensor]:
    """Scores for Lk >= 1 reference tokens, computed in chunks of ``chunk`` query positions.

    Returns a dict with any of
      "r2g":  [..., Lq]  mean over tokens of the softmax over queries,
      "g2r":  [..., Lk]  Σ_j w_j · softmax_keys(logits)[j, :]  (w = query_weight [..., Lq] or 1),
      "sram": [..., Lq, Lk] with the head axis (dim -3) averaged: the full G2R probabilities,
      "daam": [..., Lq]  mean over tokens of the softmax over keys.
    When all queries fit in one chunk the logits are computed once; otherwise R2G needs a first pass for the
    log-sum-exp over queries and recomputes each chunk's logits in the second.
    """
    lq = q.shape[-2]
    starts = range(0, lq, chunk)
    single = lq <= chunk
    first = _logits(q, k, scale) if single else None
    lse = None
    if r2g:
        lse = torch.logsumexp(first, dim=-2) if single else query_logsumexp(q, k, scale, chunk)
    r2g_parts, sram_parts, daam_parts, g2r_sum = [], [], [], None
    for start in starts:
        logits = first if single else _logits(q[..., start:start + chunk, :], k, scale)
        if r2g:
            r2g_parts.append(torch.exp(logits - lse.unsqueeze(-2)).mean(-1))
        if g2r or sram or daam:
            probs = torch.softmax(logits, dim=-1)
            if g2r:
                if query_weight is not None:
                    part = torch.matmul(query_weight[..., None, start:start + chunk], probs).squeeze(-2)
                else:
                    part = probs.sum(-2)
                g2r_sum = part if g2r_sum is None else g2r_sum + part
            if sram:
                sram_parts.append(probs.mean(-3))
            if daam:
                daam_parts.append(probs.mean(-1))
    out: dict[str, torch.Tensor] = {}
    if r2g:
        out["r2g"] = torch.cat(r2g_parts, dim=-1)
    if g2r:
        out["g2r"] = g2r_sum
    if sram:
        out["sram"] = torch.cat(sram_parts, dim=-2)
    if daam:
        out["daam"] = torch.cat(daam_parts, dim=-1)
    return out


def attention_entropy(probs: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Shannon entropy in nats of distributions along ``dim`` (normalised first)."""
    p = probs / probs.sum(dim, keepdim=True).clamp_min(eps)
    return -(p * (p.clamp_min(eps)).log()).sum(dim)
