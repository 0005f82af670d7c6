"""The DCI-VTON figures (docs/method.md §9 item 4): generated image, R2G ULAM and the 8 HLAMs; generated image, R2G ULAM
and the 5 TLAMs (t = T on the left). R2G of a single-token model is shown as 1 - map, the official reading
(docs/method.md §3.6).

    i2am reproduce tlam_hlam_dcivton [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/tlam_hlam_dcivton[-toy]/{hlam,tlam}_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

from i2am.report.run_reader import AttributeRun
from i2am.viz.figures import save_panel


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    written = []
    for view in AttributeRun(runs["dcivton"]).views():
        head = [("generated", view.generated), *view.tiles("r2g", "ulam", ["R2G ULAM"])]
        for family, label in (("hlam", "head"), ("tlam", "time group")):
            count = getattr(view.maps.r2g, family).shape[1]
            tiles = head + view.tiles("r2g", family, [f"{label} {k + 1}" for k in range(count)])
            written.append(save_panel(out / f"{family}_{view.sample_id}.png", tiles,
                                      title=f"DCI-VTON R2G {family.upper()}: {view.sample_id}"))
    return written

