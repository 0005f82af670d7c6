"""The LLAM figure (docs/method.md §9 item 3): StableVITON's R2G maps at decoder cross-attention layers 2, 5 and 8
(coarse to fine), bare and as overlays, next to the input and the output.

    i2am reproduce llam_stableviton [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/llam_stableviton[-toy]/llam_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

from i2am.report.run_reader import AttributeRun
from i2am.viz.figures import overlay, save_panel
from i2am.viz.panels import display_maps

DECODER_LAYERS = (2, 5, 8)    # 1-based among the decoder's cross-attention layers (docs/method.md §3.3)


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    written = []
    for view in AttributeRun(runs["stableviton"]).views():
        r2g, generated, size = view.direction("r2g")
        names = r2g.family_layers.get("llam") or r2g.names
        decoder = [i for i, name in enumerate(names) if "up_blocks" in name]
        chosen = [(k, decoder[k - 1]) for k in DECODER_LAYERS if k <= len(decoder)]
        maps = display_maps(r2g.llam[0, [i for _, i in chosen]], size, "r2g", view.invert)
        inputs = [("input (agnostic)", view.agnostic if view.agnostic is not None else generated),
                  ("output", generated)]
        bare = [(f"decoder layer {k}", m) for (k, _), m in zip(chosen, maps)]
        overlays = [(f"decoder layer {k}, overlay", overlay(generated, m)) for (k, _), m in zip(chosen, maps)]
        tiles = [inputs[0], *bare, inputs[1], *overlays]
        written.append(save_panel(out / f"llam_{view.sample_id}.png", tiles, columns=1 + len(chosen),
                                  title=f"StableVITON R2G LLAM: {view.sample_id}"))
    return written

