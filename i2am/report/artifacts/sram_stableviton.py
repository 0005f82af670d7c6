"""The SRAM illustration (docs/method.md §9 item 5): StableVITON's generated image on the SRAM layer's grid (warp block
4, 32x24 at full size) with a 3x3 block of patches in red, and the reference map each of those patches draws on.

    i2am reproduce sram_stableviton [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/sram_stableviton[-toy]/sram_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

from i2am.report.run_reader import AttributeRun
from i2am.viz.panels import save_sram_figure


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    written = []
    for view in AttributeRun(runs["stableviton"]).views():
        sram = view.sram()
        if sram is None:
            raise ValueError(f"{runs['stableviton']} has no SRAM maps: set capture.sram_layers")
        layer, grid, _, marked, tiles = sram
        written.append(save_sram_figure(out / f"sram_{view.sample_id}.png", marked, tiles,
                                        title=f"StableVITON SRAM at {layer} ({grid[0]}x{grid[1]}): {view.sample_id}"))
    return written

