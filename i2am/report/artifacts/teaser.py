"""The teaser (Fig. 1, docs/method.md §9 item 1) for StableVITON: reference garment, agnostic person and generated
image; Q1 row: R2G ULAM on the generated person and the TLAMs from t = T to t = 1; Q2 row: G2R ULAM on the garment and
its TLAMs; right: a 3x3 grid of SRAMs on the reference for the red patches of the generated grid.

    i2am reproduce teaser [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/teaser[-toy]/teaser_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from i2am.report.run_reader import AttributeRun
from i2am.viz.figures import new_figure


def draw(ax, title: str, image: np.ndarray) -> None:
    ax.imshow(image) if image.dtype == np.uint8 else ax.imshow(image, cmap="jet", vmin=0, vmax=1)
    ax.set_title(title, fontsize=6)
    ax.axis("off")


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    written = []
    for view in AttributeRun(runs["stableviton"]).views():
        groups = view.maps.r2g.tlam.shape[1]
        q1 = view.tiles("r2g", "ulam", ["Q1: R2G ULAM"]) + view.tiles(
            "r2g", "tlam", [f"R2G t-group {k + 1}" for k in range(groups)])
        q2 = view.tiles("g2r", "ulam", ["Q2: G2R ULAM"]) + view.tiles(
            "g2r", "tlam", [f"G2R t-group {k + 1}" for k in range(view.maps.g2r.tlam.shape[1])])
        inputs = [("reference", view.reference), ("agnostic", view.agnostic), ("generated", view.generated)]
        inputs = [(t, i) for t, i in inputs if i is not None]
        _, grid, _, marked, srams = view.sram()
        columns = max(len(q1), len(q2), len(inputs)) + 4
        figure = new_figure(figsize=(1.5 * columns, 5.0))
        spec = figure.add_gridspec(3, columns)
        for row, tiles in enumerate((inputs, q1, q2)):
            for col, (title, image) in enumerate(tiles):
                draw(figure.add_subplot(spec[row, col]), title, image)
        draw(figure.add_subplot(spec[:, columns - 4]), f"patches ({grid[0]}x{grid[1]})", marked)
        for k, (title, image) in enumerate(srams):
            draw(figure.add_subplot(spec[k // 3, columns - 3 + k % 3]), f"SRAM {title}", image)
        figure.suptitle(f"I2AM on StableVITON: {view.sample_id}", fontsize=8)
        figure.tight_layout()
        path = out / f"teaser_{view.sample_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        written.append(path)
    return written

