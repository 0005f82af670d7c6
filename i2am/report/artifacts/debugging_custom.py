"""The debugging figure (docs/method.md §5.5, §9 item 11): garment, custom and refined custom outputs, and per model the
SRAMs of two generated patches at decoder layer 2 (the pixelated generated grid with the patches in red, then the
reference map of each). Spread-out SRAMs are what the paper diagnosed as colour inconsistency; the refined model's
should be concentrated.

    i2am reproduce debugging_custom [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/debugging_custom[-toy]/debugging_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

from i2am.report.run_reader import AttributeRun
from i2am.viz.figures import save_panel
from i2am.viz.panels import mark_cells

PATCHES = (4, 0)    # the centre and the top-left cell of the 3x3 SRAM block


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    custom, refined = AttributeRun(runs["custom"]).views(), AttributeRun(runs["refined"]).views()
    written = []
    for c, r in zip(custom, refined):
        garment = c.reference if c.reference is not None else c.generated
        tiles = [("garment", garment), ("custom", c.generated), ("refined custom", r.generated)]
        for label, view in (("custom", c), ("refined", r)):
            _, grid, cells, _, srams = view.sram()
            tiles.append((f"{label}: patches ({grid[0]}x{grid[1]} grid)",
                          mark_cells(view.generated, grid, cells[list(PATCHES)])))
            tiles += [(f"{label}: SRAM {srams[k][0]}", srams[k][1]) for k in PATCHES]
        written.append(save_panel(out / f"debugging_{c.sample_id}.png", tiles, columns=3,
                                  title=f"custom vs refined, SRAM at decoder layer 2: {c.sample_id}"))
    return written

