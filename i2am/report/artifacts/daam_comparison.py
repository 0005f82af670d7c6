"""The DAAM comparison (docs/method.md §5.4, §9 item 10): I2AM's R2G ULAM next to DAAM's map for the whole reference,
the sum of DAAM's per-token heat maps over every reference token: (a) StableVITON, all patch embeddings (the word maps
of its SRAM layer, warp block 4); (b) DCI-VTON, one CLS token, whose only word map is the softmax over one key, 1.

The sum over tokens is 1 at every position by construction. Drawn as the paper does (min-max stretched) it shows
StableVITON's float rounding as blotches and DCI-VTON's exact ones as a flat map; drawn as it is (0 to its largest
value, colour bar) both are flat.

    i2am reproduce daam_comparison [--toy] [--make-only] [hydra overrides]
    -> <paths.output_dir>/experiments/daam_comparison[-toy]/daam_<sample>.png
"""
from __future__ import annotations

from pathlib import Path

import torch

from i2am.engine.maps import AttributionMaps
from i2am.engine.render import overlay
from i2am.report.run_reader import AttributeRun
from i2am.viz.canvas import new_figure, save_figure
from i2am.viz.figures import image_axes
from i2am.viz.panels import display_maps
from i2am.viz.plot import add_colorbar, draw_map

LABELS = {"stableviton": "(a) StableVITON, all patch embeddings", "dcivton": "(b) DCI-VTON, CLS embedding only"}


def daam_whole_reference(maps: AttributionMaps) -> tuple[torch.Tensor, str]:
    """[h, w] DAAM's word maps of sample 0 summed over every reference token (per step), and where they come from:
    the first SRAM layer's word maps, or, when every R2G layer has one reference token, that token's word map (the
    softmax over one key: ones on the generated grid)."""
    layers = [key[len("sram/"):] for key in maps.raw if key.startswith("sram/")]
    if layers:
        words = maps.daam_word_maps(layers[0], reduce="mean")[0]
        return words.sum(0), f"{words.shape[0]} tokens of {layers[0]}"
    refs = [m.get("ref_grid") for m in maps.meta["layers"] if f"r2g/{m['name']}" in maps.raw]
    if refs and all(r is not None and r[0] * r[1] == 1 for r in refs):
        return torch.ones(maps.r2g.family_grid("ulam")), "1 token: softmax over one key"
    raise ValueError("the DAAM comparison needs an SRAM layer (capture.sram_layers) or single-token R2G layers")


def make(runs: dict[str, Path], out: Path, cfg) -> list[Path]:
    views = {label: AttributeRun(path).views() for label, path in runs.items()}
    written = []
    for k in range(min(len(v) for v in views.values())):
        figure = new_figure(figsize=(10.5, 2.9 * len(views)))
        axes = figure.subplots(len(views), 4, squeeze=False)
        for row, (label, model_views) in zip(axes, views.items()):
            view = model_views[k]
            size = view.generated.shape[:2]
            daam, source = daam_whole_reference(view.maps)
            row[0].imshow(view.generated)
            row[0].set_title(f"{LABELS.get(label, label)}:\ngenerated", fontsize=7)
            (title, tile), = view.tiles("r2g", "ulam", ["I2AM R2G ULAM"])
            row[1].imshow(tile)
            row[1].set_title(title, fontsize=7)
            row[2].imshow(overlay(view.generated, display_maps(daam[None], size, "r2g")[0]))
            row[2].set_title(f"DAAM, min-max stretched (paper)\n{source}", fontsize=7)
            shown = draw_map(row[3], daam, view.generated, 0.0, max(float(daam.max()), 1e-12))
            add_colorbar(figure, shown, [row[3]], "none", "sum over tokens (per step)")
            row[3].set_title(f"DAAM as it is: {float(daam.min()):.6g}-{float(daam.max()):.6g}", fontsize=7)
            for ax in row:
                image_axes(ax)
        figure.suptitle("I2AM vs DAAM (word maps summed over the reference tokens)", fontsize=9)
        sample_id = views[next(iter(views))][k].sample_id
        written.append(save_figure(figure, out / f"daam_{sample_id}.png", dpi=110))
    return written
