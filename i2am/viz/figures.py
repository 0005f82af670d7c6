"""Figures of attribution maps: overlays in the paper's style, panels of tiles, and the attribution run's per-sample
panel writer. Figures are ``matplotlib.figure.Figure`` objects drawn on the Agg canvas: importing this module never
switches the global (e.g. a notebook's) backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from i2am.data import schema
from i2am.data.image_io import to_uint8_image
from i2am.engine.render import overlay
from i2am.runs import RunDir
from i2am.viz.canvas import new_figure, save_figure
from i2am.viz.video_samples import video_panel

__all__ = ["SamplePanels", "image_axes", "new_figure", "overlay", "save_figure", "save_panel", "to_uint8_image"]


def image_axes(ax) -> None:
    """An axes that only shows an image: no frame, no ticks. Emptying the tick lists (invisible anyway once the axis
    is off) spares matplotlib from laying out tick labels that are never drawn, which dominated a panel's cost."""
    ax.axis("off")
    ax.set_xticks([])
    ax.set_yticks([])


def save_panel(path: str | Path, tiles: list[tuple[str, np.ndarray]], columns: int | None = None,
               title: str | None = None, tile_size: float = 1.6) -> Path:
    """A grid of titled tiles (uint8 RGB images or float maps shown with jet) written as one PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or len(tiles)
    rows = -(-len(tiles) // columns)
    fig = new_figure(figsize=(tile_size * columns, tile_size * 1.3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        image_axes(ax)
    for ax, (name, tile) in zip(axes.flat, tiles):
        if tile.dtype == np.uint8:
            ax.imshow(tile)
        else:
            ax.imshow(tile, cmap="jet", vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


class SamplePanels:
    """A sample writer of the attribution loop: the first ``count`` samples' panel (reference, generated, R2G and
    G2R ULAM overlays) as ``figures/<id>.png`` of the run; for a generated video, the R2G ULAM frame strip over its
    frames there and its animation as ``per_sample/<id>/r2g.gif``."""

    def __init__(self, run: RunDir, count: int = 4, preset: str = "official"):
        self.run, self.count, self.preset = run, count, preset
        self.written = 0

    def __call__(self, ctx) -> None:
        if self.written >= self.count:
            return
        self.written += 1
        if ctx.generated.dim() == 5:   # a video: the R2G frame strip, and its animation in the sample's folder
            if ctx.maps.r2g.available:
                video_panel(ctx.maps, ctx.generated[0], self.run.sample_figure(ctx.sample_id),
                            self.run.sample_dir(ctx.sample_id) / "r2g.gif", title=ctx.sample_id)
            return
        gen = to_uint8_image(ctx.generated[0])
        tiles = [("generated", gen)]
        if schema.REFERENCE in ctx.sample:
            tiles.insert(0, ("reference", to_uint8_image(ctx.sample[schema.REFERENCE][0])))
        for direction, base in (("r2g", gen), ("g2r", tiles[0][1])):
            if direction in ctx.rendered:
                attribution = ctx.rendered[direction][0]
                if self.preset == "official":
                    attribution = 1 - attribution   # the official P is scored as 1 - P (paper Appendix A)
                tiles.append((f"{direction.upper()} ULAM", overlay(base, attribution)))
        save_panel(self.run.sample_figure(ctx.sample_id), tiles, title=ctx.sample_id)
