"""Shared quantities of the custom model's attention losses (docs/method.md §6.3).

Shapes: B batch, Lq = hq*wq generated-image queries in raster order, (hr, wr) the reference token grid.
`attn` is always the head-averaged G2R probability map [B, Lq, hr, wr] (each query's row sums to 1).
"""

import torch
import torch.nn.functional as F


def head_average(probs: torch.Tensor, ref_grid: tuple[int, int]) -> torch.Tensor:
    """[B, heads, Lq, Lk] softmax probabilities over reference tokens -> head mean [B, Lq, hr, wr]."""
    if probs.dim() != 4:
        raise ValueError(f"head_average: probs must be [B, heads, Lq, Lk], got shape {tuple(probs.shape)}")
    hr, wr = ref_grid
    b, _, lq, lk = probs.shape
    if lk != hr * wr:
        raise ValueError(f"head_average: {lk} reference tokens do not form ref_grid={tuple(ref_grid)}")
    return probs.mean(dim=1).reshape(b, lq, hr, wr)


@torch.no_grad()
def query_mask(warped_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Warped-garment mask [B, 1, H, W] -> boolean query mask [B, hq*wq].

    Nearest resize (torch's legacy "nearest", as the official `attn_mask_resize`), then threshold at >= 0.5.
    """
    if warped_mask.dim() != 4 or warped_mask.shape[1] != 1:
        raise ValueError(f"query_mask: warped_mask must be [B, 1, H, W], got shape {tuple(warped_mask.shape)}")
    resized = F.interpolate(warped_mask.float(), size=tuple(grid), mode="nearest")
    return (resized >= 0.5).flatten(1)


def reference_coordinates(ref_grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """[hr, wr, 2] (y, x) index of every reference cell, in `like`'s dtype and device."""
    hr, wr = ref_grid
    ys = torch.arange(hr, dtype=like.dtype, device=like.device)
    xs = torch.arange(wr, dtype=like.dtype, device=like.device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


def attention_centroids(attn: torch.Tensor) -> torch.Tensor:
    """c_j = sum_{y,x} A_j(y, x) * (y, x): [B, Lq, hr, wr] -> [B, Lq, 2] in reference-cell units (y, x).

    Gradients flow through the centroid, as in the official code (it is not detached there).
    """
    check_attention(attn, "attention_centroids")
    hr, wr = attn.shape[-2:]
    ys = torch.arange(hr, dtype=attn.dtype, device=attn.device)
    xs = torch.arange(wr, dtype=attn.dtype, device=attn.device)
    cy = attn.sum(dim=-1) @ ys  # row marginals [B, Lq, hr] . y
    cx = attn.sum(dim=-2) @ xs  # column marginals [B, Lq, wr] . x
    return torch.stack([cy, cx], dim=-1)


def check_attention(attn: torch.Tensor, where: str) -> None:
    if attn.dim() != 4:
        raise ValueError(f"{where}: attn must be [B, Lq, hr, wr], got shape {tuple(attn.shape)}")


def check_query_mask(mask: torch.Tensor, batch: int, queries: int, where: str) -> None:
    if mask.shape != (batch, queries):
        raise ValueError(f"{where}: mask must be [B, Lq] = [{batch}, {queries}], got shape {tuple(mask.shape)}")


def check_grid(grid: tuple[int, int], queries: int, where: str) -> None:
    if len(grid) != 2 or grid[0] * grid[1] != queries:
        raise ValueError(f"{where}: query grid {tuple(grid)} does not hold Lq={queries} queries")
