"""The figure of docs/dit_editors.md's two normalisations: one held-out toy pair, one generated cell, its SRAM under
``i2am`` (softmax over the reference tokens) and ``share`` (its mass on each reference token in the full joint
softmax), each on the reference garment with the true corresponding point marked."""
from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.patches import Rectangle

from i2am.adapters.toy_kontext import IMAGE_SIZE, TOKEN_GRID, ToyKontextPairs
from i2am.data import schema
from i2am.measures.localization import argmax_location, true_source_cells
from i2am.viz.canvas import new_figure, save_figure


def query_cell(pairs: ToyKontextPairs) -> int:
    """The raster index of the first pair's valid generated cell nearest the centre of its valid cells."""
    valid = torch.nonzero(pairs.valid[0]).flatten()
    if valid.numel() == 0:
        raise ValueError("query_cell: the pair has no generated cell with a true source")
    rows, cols = valid // TOKEN_GRID[1], valid % TOKEN_GRID[1]
    cells = torch.stack([rows, cols], -1).float()
    return int(valid[(cells - cells.mean(0)).norm(dim=-1).argmin()])


def _pixels(image: torch.Tensor):
    return ((image.float().permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()


def _cell_to_pixel(point):
    """(row, col) cell coordinates of the 16x12 grid -> (x, y) pixel coordinates of the 128x96 image."""
    scale_y, scale_x = IMAGE_SIZE[0] / TOKEN_GRID[0], IMAGE_SIZE[1] / TOKEN_GRID[1]
    return (float(point[1]) + 0.5) * scale_x - 0.5, (float(point[0]) + 0.5) * scale_y - 0.5


def least_spending_cell(share: torch.Tensor) -> int:
    """The raster index of the generated cell whose attention lands least on the reference (share SRAM [1, Lg, ...])."""
    return int(share[0].flatten(1).sum(-1).argmin())


def draw_normalisations(srams: dict[str, torch.Tensor], pairs: ToyKontextPairs, item: dict, path: str | Path,
                        num_steps: int) -> Path:
    """srams: ``capture_srams`` of one pair ({"i2am": [1, Lg, hr, wr], "share": ...}); item: that pair's dataset
    item (pixels). Writes a 2x4 PNG, one row per generated cell (``query_cell``: on the garment; then
    ``least_spending_cell``): the person with the cell, the garment with the cell's true source, and the two SRAMs of
    that cell (per-step means) over the garment."""
    sources = true_source_cells(pairs.correspondence[:1], TOKEN_GRID, TOKEN_GRID, IMAGE_SIZE)[0][0]
    rows = [(query_cell(pairs), True), (least_spending_cell(srams["share"]), False)]
    garment = _pixels(item[schema.REFERENCE])
    fig = new_figure(figsize=(11, 3.7 * len(rows)), dpi=80)
    axes = fig.subplots(len(rows), 4, squeeze=False)
    extent = (-0.5, IMAGE_SIZE[1] - 0.5, IMAGE_SIZE[0] - 0.5, -0.5)
    half = IMAGE_SIZE[1] / TOKEN_GRID[1] / 2
    for row, (index, on_garment) in zip(axes, rows):
        query = (index // TOKEN_GRID[1], index % TOKEN_GRID[1])
        has_source = bool(pairs.valid[0, index])
        row[0].imshow(_pixels(item[schema.IMAGE]))
        qx, qy = _cell_to_pixel(query)
        row[0].add_patch(Rectangle((qx - half, qy - half), 2 * half, 2 * half, fill=False, color="red", lw=2))
        row[0].set_title(f"generated cell {query}\n" + ("on the garment" if on_garment else
                         "spending least on the reference"), fontsize=9)
        row[1].imshow(garment)
        row[1].set_title("reference garment" + (", true source +" if has_source else "\n(no true source)"),
                         fontsize=9)
        for ax, name in zip(row[2:], ("i2am", "share")):
            grid = srams[name][0, index] / num_steps
            ax.imshow(garment, alpha=0.45)
            shown = ax.imshow(grid.numpy(), cmap="magma", alpha=0.75, extent=extent, interpolation="nearest")
            fig.colorbar(shown, ax=ax, fraction=0.06, pad=0.02)
            ax.plot(*_cell_to_pixel(argmax_location(grid)), marker="o", mfc="none", mec="cyan", ms=9, mew=2)
            ax.set_title("i2am: softmax over the reference\n(sums to 1)" if name == "i2am" else
                         f"share: mass in the joint softmax\n(sums to {float(grid.sum()):.2f} of the cell's attention)",
                         fontsize=9)
        if has_source:
            for ax in row[1:]:
                ax.plot(*_cell_to_pixel(sources[index]), marker="+", color="lime", ms=14, mew=2.5)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("toy Kontext-style transformer, held-out pair: SRAM of a generated cell of "
                 "transformer_blocks.1.attn (o argmax, + true source)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
