"""The paper's three attention losses of the custom model, as the official `AttentionLoss` (docs/method.md §6.4).

Every mean runs over all elements, masked or not, as the official code does (no division by the mask sum).
Inputs: `attn` [B, Lq, hr, wr] head-averaged G2R probabilities, `centroids` [B, Lq, 2] (y, x) from
`attention_centroids`, `mask` [B, Lq] bool from `query_mask`, `grid` = (hq, wq) the query grid.
"""

import torch

from i2am.losses.geometry import (
    attention_centroids,
    check_attention,
    check_grid,
    check_query_mask,
    reference_coordinates,
)

PAPER_QUERY_GRID = (16, 12)


def cwg_loss(
    attn: torch.Tensor,
    mask: torch.Tensor,
    weight: float = 2.0,
    sigma: float = 1.0,
    centroids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Center-Weighted Gaussian loss: -weight * mean_{b,j,y,x}[ w_j(y,x) * m_j * A_j(y,x) ].

    w_j(y,x) = exp(-||(y,x) - c_j||_2 / (2 sigma^2)) with the Euclidean distance, not its square (official code).
    `centroids` defaults to `attention_centroids(attn)`; pass them to share one computation with TV and DCML.
    Gradients flow through both A and the centroid, as in the official code.
    """
    check_attention(attn, "cwg_loss")
    b, lq, hr, wr = attn.shape
    check_query_mask(mask, b, lq, "cwg_loss")
    if centroids is None:
        centroids = attention_centroids(attn)
    cells = reference_coordinates((hr, wr), attn)  # [hr, wr, 2]
    distance = torch.linalg.vector_norm(cells - centroids[:, :, None, None, :], dim=-1)  # [B, Lq, hr, wr]
    gaussian = torch.exp(-distance / (2 * sigma**2))
    masked_attn = attn * mask.to(attn.dtype)[:, :, None, None]
    return -weight * (gaussian * masked_attn).mean()


def tv_loss(
    centroids: torch.Tensor,
    mask: torch.Tensor,
    grid: tuple[int, int] = PAPER_QUERY_GRID,
    weight: float = 1e-4,
) -> torch.Tensor:
    """Squared ("l2") total variation of the centroid field over neighbouring masked queries.

    weight * [ mean((c[y+1,x] - c[y,x])^2 m[y+1,x] m[y,x]) + mean((c[y,x+1] - c[y,x])^2 m[y,x+1] m[y,x]) ],
    each mean over all [B, hq-1, wq, 2] resp. [B, hq, wq-1, 2] elements (both coordinates count).
    """
    b, lq, _ = centroids.shape
    check_query_mask(mask, b, lq, "tv_loss")
    check_grid(grid, lq, "tv_loss")
    field = centroids.reshape(b, *grid, 2)
    m = mask.to(centroids.dtype).reshape(b, *grid, 1)
    vertical = (field[:, 1:] - field[:, :-1]) ** 2 * (m[:, 1:] * m[:, :-1])
    horizontal = (field[:, :, 1:] - field[:, :, :-1]) ** 2 * (m[:, :, 1:] * m[:, :, :-1])
    return weight * (vertical.mean() + horizontal.mean())


def raster_pair_masks(grid: tuple[int, int], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean [Lq, Lq] masks over ordered query pairs (i, j): j right of i in its row; j below i in its column."""
    hq, wq = grid
    index = torch.arange(hq * wq, device=device)
    row, col = index // wq, index % wq
    right_of = (row[:, None] == row[None, :]) & (col[None, :] > col[:, None])
    below = (col[:, None] == col[None, :]) & (row[None, :] > row[:, None])
    return right_of, below


def dcml_loss(
    centroids: torch.Tensor,
    mask: torch.Tensor,
    grid: tuple[int, int] = PAPER_QUERY_GRID,
    weight: float = 0.01,
) -> torch.Tensor:
    """Distance-Centering Maximization loss: rewards centroids ordered like their queries.

    For masked pairs (i, j) with j right of i in the same row: relu(c_j^x - c_i^x); with j below i in the same
    column: relu(c_j^y - c_i^y); zero otherwise. L = -weight * mean over all B x Lq x Lq pairs.
    """
    b, lq, _ = centroids.shape
    check_query_mask(mask, b, lq, "dcml_loss")
    check_grid(grid, lq, "dcml_loss")
    right_of, below = raster_pair_masks(grid, centroids.device)
    cy, cx = centroids[..., 0], centroids[..., 1]
    x_gain = torch.relu(cx[:, None, :] - cx[:, :, None])  # [B, i, j] = relu(c_j^x - c_i^x)
    y_gain = torch.relu(cy[:, None, :] - cy[:, :, None])
    m = mask.to(centroids.dtype)
    both_masked = m[:, :, None] * m[:, None, :]
    terms = (x_gain * right_of + y_gain * below) * both_masked
    return -weight * terms.mean()
