"""Figures of the faithfulness and randomisation checks (matplotlib ``Figure`` on the Agg canvas: the global backend
is never touched)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from i2am.measures.curves import retained
from i2am.viz.canvas import new_figure, save_figure


def _save(fig: Figure, path: str | Path) -> Path:
    return save_figure(fig, path, dpi=110, bbox_inches="tight")


def _order_style(order: str) -> dict:
    if order == "attribution":
        return dict(color="tab:red", lw=2.2, label="attribution order")
    if order == "inverse":
        return dict(color="tab:blue", lw=1.8, ls="--", label="inverse order")
    return dict(color="0.55", lw=0.8, alpha=0.7)


def curves_figure(path: str | Path, fractions: Sequence[float], curves: Mapping[str, Mapping], title: str = "",
                  space: str = "pixel") -> Path:
    """Deletion and insertion curves (share of the output retained, 1 = unchanged) of every mode for one space:
    the attribution order, the inverse order and the random orders with their mean."""
    modes = list(curves)
    fig = new_figure(figsize=(4.2 * 2, 3.0 * len(modes)))
    for r, mode in enumerate(modes):
        data = curves[mode][space]
        full = torch.tensor(data["all_removed"], dtype=torch.float64)
        for c, name in enumerate(("deletion", "insertion")):
            ax = fig.add_subplot(len(modes), 2, 2 * r + c + 1)
            randoms = []
            for order, values in data[name].items():
                y = retained(torch.tensor(values), full).numpy()
                if order.startswith("random"):
                    randoms.append(y)
                ax.plot(fractions, y, **_order_style(order))
            if randoms:
                ax.plot(fractions, np.mean(randoms, 0), color="k", lw=1.5,
                        label=f"random order (mean of {len(randoms)})")
            label = "proxy (teacher-forced x0)" if mode == "proxy" else "full regeneration"
            ax.set_title(f"{name}: {label}", fontsize=9)
            ax.set_xlabel("fraction of reference tokens " + ("removed" if name == "deletion" else "kept"), fontsize=8)
            ax.set_ylabel(f"output retained ({space})", fontsize=8)
            ax.grid(alpha=0.3)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def randomization_figure(path: str | Path, stages: Sequence[str], similarity: Mapping[str, Sequence[float]],
                         reference: Mapping[str, float], title: str = "") -> Path:
    """Similarity of the randomised model's maps to the original's after each cascading stage, with the level of two
    runs of the original model with different noise (dashed)."""
    fig = new_figure(figsize=(max(5.0, 0.45 * len(stages) + 2), 3.4))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(stages))
    colours = {"r2g_spearman": "tab:red", "r2g_ssim": "tab:orange", "g2r_spearman": "tab:blue",
               "g2r_ssim": "tab:cyan"}
    for key, values in similarity.items():
        ax.plot(x, values, marker="o", ms=3, color=colours.get(key), label=key.replace("_", " "))
        if key in reference:
            ax.axhline(reference[key], color=colours.get(key), ls="--", lw=1)
    ax.set_xticks(x, stages, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("similarity to the original map", fontsize=8)
    ax.set_xlabel("re-initialised up to (cascading from the output side)", fontsize=8)
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="dashed: two noise seeds", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def randomization_maps_figure(path: str | Path, stages: Sequence[str], original: Mapping[str, torch.Tensor],
                              per_stage: Sequence[Mapping[str, torch.Tensor]], regions: Mapping[str, torch.Tensor],
                              title: str = "") -> Path:
    """The original map and the map after each cascading stage, per direction: one row over the whole grid, and for
    a direction with a region one row within it only (min-max normalised over the region, blank outside: the cells
    the within-region numbers compare)."""
    from i2am.measures.curves import minmax
    from i2am.measures.region_similarity import region_cells

    rows = []
    for direction, first in original.items():
        maps = [first] + [stage[direction] for stage in per_stage if direction in stage]
        rows.append((f"{direction}, whole grid", [minmax(m.float()).numpy() for m in maps]))
        if direction in regions:
            inside = region_cells(regions[direction], tuple(first.shape[-2:]))
            shown = []
            for m in maps:
                values = m.float()[inside]
                span = float(values.max() - values.min()) if values.numel() else 0.0
                scaled = (m.float() - values.min()) / span if span > 0 else torch.zeros_like(m.float())
                shown.append(np.ma.masked_array(scaled.numpy(), mask=~inside.numpy()))
            rows.append((f"{direction}, within region", shown))
    labels = ["original", *stages[:len(per_stage)]]
    fig = new_figure(figsize=(1.3 * len(labels) + 0.6, 1.5 * len(rows) + 0.6))
    for r, (name, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = fig.add_subplot(len(rows), len(labels), r * len(labels) + c + 1)
            ax.imshow(image, cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[c], fontsize=6, rotation=30)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
