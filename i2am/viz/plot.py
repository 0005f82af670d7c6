"""Figures of one sample's attribution maps, for people: ``plot`` (a family of one direction, over its image),
``plot_sram`` (chosen generated cells, outlined, and their specific-reference maps), ``plot_words`` (DAAM's word heat
maps, titled with the tokenizer's words), ``sample_figures`` (all of them) and ``save_figures``.

Every function returns a matplotlib ``Figure`` on its own Agg canvas (``i2am.viz.canvas``): no pyplot state, the
user's backend untouched. Values are drawn as they are, cell by cell (no smoothing), over the image:
  view       "distribution" (default): per-step mean with mass-preserving resizes, a probability per cell that sums
             to 1 over the map; "mean": per-step mean, value-resized; "sum": the raw sums over steps (the families).
  normalize  "none" (default): one colour scale from 0 to the largest value of the figure, with a colour bar, so a
             map spanning 0.144-0.149 looks flat; "minmax": every map stretched to its own [0, 1] (shapes only).
Maps over a sequence of tokens (text, IP-Adapter image tokens: a reference "grid" of one row) are bar charts.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from i2am.engine.maps import FAMILIES, AttributionMaps
from i2am.viz.canvas import new_figure, save_figure

VIEWS = ("distribution", "mean", "sum")
NORMALIZE = ("none", "minmax")
VIEW_UNITS = {"distribution": "probability per cell (per step)", "mean": "per-step mean (value-resized)",
              "sum": "sum over steps (value-resized)"}
PANEL = 2.2          # inches per map panel
MAX_COLUMNS = 6


def short_layer_name(name: str) -> str:
    """A layer's name short enough for a panel title: no relation prefix, no UNet "attentions.<k>.transformer_blocks.0."
    detour, no "_blocks" (``text/up_blocks.1.attentions.0.transformer_blocks.0.attn2`` -> ``up.1.0.attn2``)."""
    short = re.sub(r"attentions\.(\d+)\.transformer_blocks\.0\.", r"\1.", name.rsplit("/", 1)[-1])
    return short.replace("_blocks", "")


def _check(view: str, normalize: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"view={view!r}: choose from {VIEWS}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize={normalize!r}: choose from {NORMALIZE}")


def as_image(image) -> np.ndarray | None:
    """uint8 [H, W, 3] or float [H, W, 3] in [0, 1] as given; a tensor [3, H, W] in [-1, 1] (i2am's images) converted;
    a PIL image as an array."""
    if image is None:
        return None
    if torch.is_tensor(image):
        return ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return np.asarray(image)


def family_maps(maps: AttributionMaps, family: str, direction: str = "r2g", view: str = "distribution",
                sample: int = 0) -> tuple[torch.Tensor, list[str]]:
    """One sample's maps of a family, [K, h, w] (K = 1 for ULAM), and one label per map."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}: choose from {FAMILIES}")
    if direction not in ("r2g", "g2r"):
        raise ValueError(f"direction={direction!r}: choose 'r2g' or 'g2r'")
    if view not in VIEWS:
        raise ValueError(f"view={view!r}: choose from {VIEWS}")
    directed = getattr(maps, direction)
    if not directed.available:
        raise ValueError(f"no {direction.upper()} maps in this capture: "
                         f"{directed.degenerate or 'add ' + direction + ' to capture.directions'}")
    values = getattr(directed, family) if view == "sum" else getattr(directed, view)(family)
    stack = values[sample].detach().float().cpu()
    stack = stack[None] if family == "ulam" else stack
    tag = direction.upper()
    if family == "ulam":
        labels = [f"{tag} ULAM"]
    elif family == "tlam":
        starts = np.cumsum([0] + list(maps.group_steps or []))
        labels = [f"{tag} TLAM steps {starts[g]}-{starts[g + 1] - 1}" if maps.group_steps else f"{tag} TLAM {g}"
                  for g in range(stack.shape[0])]
    elif family == "hlam":
        labels = [f"{tag} head {h}" for h in range(stack.shape[0])]
    else:
        names = directed.family_layers.get("llam") or directed.names
        labels = [f"{tag} {short_layer_name(name)}" for name in names]
    return stack, labels


def _limits(stack: torch.Tensor, normalize: str) -> tuple[torch.Tensor, float, float]:
    """The values to draw and their colour range: 0 to the largest value, or each map min-max stretched."""
    if normalize == "minmax":
        flat = stack.flatten(-2)
        lo = flat.min(-1).values[..., None, None]
        hi = flat.max(-1).values[..., None, None]
        return (stack - lo) / (hi - lo).clamp(min=1e-12), 0.0, 1.0
    return stack, 0.0, max(float(stack.max()), 1e-12)


def grid_shape(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a grid of ``count`` panels, at most ``MAX_COLUMNS`` wide unless ``columns`` is given."""
    columns = columns or min(count, MAX_COLUMNS)
    return -(-count // columns), columns


def grid_figsize(rows: int, columns: int) -> tuple[float, float]:
    return PANEL * columns + 0.8, PANEL * rows + 0.5


def _grid(count: int, columns: int | None, extra: int = 0, into=None) -> tuple[Figure, list, int]:
    """Panels on ``into`` (a Figure or a SubFigure of one) or on a new Figure."""
    rows, columns = grid_shape(count + extra, columns)
    fig = into if into is not None else new_figure(figsize=grid_figsize(rows, columns))
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[count + extra:]:
        ax.axis("off")
    return fig, axes, columns


def draw_map(ax, grid_map: torch.Tensor, image: np.ndarray | None, vmin: float, vmax: float, cmap: str = "jet",
             alpha: float = 0.55):
    """One map, cell by cell, over ``image`` (stretched to the image's extent) or alone; returns the colour mapping."""
    values = grid_map.detach().float().cpu().numpy()
    if image is None:
        return ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    height, width = image.shape[:2]
    ax.imshow(image)
    return ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation="nearest",
                     extent=(-0.5, width - 0.5, height - 0.5, -0.5))


def add_colorbar(fig: Figure, mappable, axes, normalize: str, units: str) -> None:
    """A colour bar for ``axes`` labelled with the values' units (or the min-max reading)."""
    label = "min-max per map (0 = its min, 1 = its max)" if normalize == "minmax" else units
    bar = fig.colorbar(mappable, ax=axes, fraction=0.04, pad=0.02)
    bar.solids.set_alpha(1)      # the scale itself opaque, though the maps lie translucent over their images
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=6)


def draw_maps(stack: torch.Tensor, labels: Sequence[str], image=None, *, normalize: str = "none",
              colorbar: bool = True, view: str = "distribution", title: str | None = None,
              columns: int | None = None, cmap: str = "jet", units: str | None = None, into=None) -> Figure:
    """A grid of maps [K, h, w] on one colour scale (``normalize``), each over ``image`` when given; ``units`` labels
    the colour bar (default: the unit of ``view``); ``into``: draw on this Figure / SubFigure instead of a new one."""
    _check(view, normalize)
    base = as_image(image)
    shown, vmin, vmax = _limits(stack.detach().float().cpu(), normalize)
    fig, axes, _ = _grid(len(shown), columns, into=into)
    mappable = None
    for ax, grid_map, label in zip(axes, shown, labels):
        mappable = draw_map(ax, grid_map, base, vmin, vmax, cmap)
        ax.set_title(f"{label}\n{float(grid_map.min()):.3g}-{float(grid_map.max()):.3g}"
                     if normalize == "none" else label, fontsize=7)
    if colorbar and mappable is not None:
        add_colorbar(fig, mappable, axes[:len(shown)], normalize, units or VIEW_UNITS[view])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def draw_token_bars(stack: torch.Tensor, labels: Sequence[str], tokens: Sequence[str] | None = None, *,
                    normalize: str = "none", view: str = "distribution", title: str | None = None) -> Figure:
    """Maps over a sequence of tokens ([K, 1, T] or [K, T]) as one bar chart each, bars labelled with ``tokens``."""
    _check(view, normalize)
    values, _, vmax = _limits(stack.detach().float().cpu().reshape(len(stack), 1, -1), normalize)
    values = values[:, 0]
    count = values.shape[-1]
    names = list(tokens) if tokens is not None else [f"token {t}" for t in range(count)]
    if len(names) != count:
        raise ValueError(f"tokens: {len(names)} labels for {count} tokens")
    fig = new_figure(figsize=(min(max(3.5, 0.35 * count + 1.5), 14.0), 2.4 * len(values) + 0.4))
    axes = fig.subplots(len(values), 1, squeeze=False)[:, 0]
    for ax, row, label in zip(axes, values, labels):
        ax.bar(range(count), row.numpy(), color="tab:red")
        ax.set_ylim(0, vmax * 1.05)
        ax.set_xticks(range(count), names, rotation=60, ha="right", fontsize=7 if count <= 40 else 5)
        ax.set_title(label, fontsize=8)
        ax.set_ylabel("min-max per chart" if normalize == "minmax" else VIEW_UNITS[view].replace("cell", "token"),
                      fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot(maps: AttributionMaps, image=None, *, family: str = "ulam", direction: str = "r2g",
         normalize: str = "none", colorbar: bool = True, view: str = "distribution", sample: int = 0,
         tokens: Sequence[str] | None = None, title: str | None = None, columns: int | None = None,
         into=None) -> Figure:
    """One family of one direction of sample ``sample``: ULAM one panel, TLAM / HLAM / LLAM a grid (one panel per
    time group / head / layer), on one colour scale with a colour bar. ``image``: the image the map lies on (the
    generated image for R2G, the reference for G2R; uint8 or [0, 1] float [H, W, 3], or an i2am tensor [3, H, W]
    in [-1, 1]); None draws the bare grid. A G2R map over tokens (text, IP-Adapter) is a bar chart, one bar per
    token labelled with ``tokens`` (e.g. ``word_labels``). Video maps (a frame axis) are drawn as a frame strip
    (``i2am.viz.video.frame_strip``; ``image``: the decoded video's frames)."""
    if getattr(maps, direction).frames is not None:
        from i2am.viz.video import frame_strip  # video.py draws with this module's panels

        return frame_strip(maps, image, family=family, direction=direction, view=view, normalize=normalize,
                           sample=sample, colorbar=colorbar, title=title)
    stack, labels = family_maps(maps, family, direction, view, sample)
    if direction == "g2r" and maps.g2r_on_tokens:
        return draw_token_bars(stack, labels, tokens, normalize=normalize, view=view, title=title)
    return draw_maps(stack, labels, image, normalize=normalize, colorbar=colorbar, view=view, title=title,
                     columns=columns, into=into)


def outline_cells(ax, cells: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], color: str = "cyan") -> None:
    """Outline (never fill) grid cells [(row, col), ...] of a ``grid``-sized layer over an image of ``size`` (H, W),
    numbered in the order given."""
    cell_h, cell_w = size[0] / grid[0], size[1] / grid[1]
    for k, (row, col) in enumerate(torch.as_tensor(cells).reshape(-1, 2).tolist()):
        ax.add_patch(Rectangle((col * cell_w - 0.5, row * cell_h - 0.5), cell_w, cell_h, fill=False,
                               edgecolor=color, linewidth=1.5))
        ax.text(col * cell_w + cell_w / 2 - 0.5, row * cell_h - 1, str(k), color=color, fontsize=6,
                ha="center", va="bottom")


def plot_sram(maps: AttributionMaps, layer: str, cells, generated, reference=None, *, normalize: str = "none",
              colorbar: bool = True, view: str = "mean", sample: int = 0, title: str | None = None,
              columns: int | None = None) -> Figure:
    """Specific-reference maps: the generated image with the chosen query cells [(row, col), ...] of ``layer``'s
    grid outlined and numbered, then each cell's SRAM over the reference (``view``: "mean", per step, a distribution
    over the reference grid; "sum", over steps), on one colour scale."""
    if view not in ("mean", "sum"):
        raise ValueError(f"view={view!r}: an SRAM is 'mean' (per step) or 'sum' (over steps)")
    _check(view, normalize)
    cells = torch.as_tensor(cells, dtype=torch.long).reshape(-1, 2)
    srams = maps[sample].sram(layer, points=cells, reduce=view)[0].float().cpu()
    base, ref = as_image(generated), as_image(reference)
    shown, vmin, vmax = _limits(srams, normalize)
    fig, axes, _ = _grid(len(shown), columns, extra=1)
    grid = tuple(maps.layer_meta(layer)["query_grid"])
    axes[0].imshow(base)
    outline_cells(axes[0], cells, grid, base.shape[:2])
    axes[0].set_title(f"generated: query cells of\n{short_layer_name(layer)} ({grid[0]}x{grid[1]})", fontsize=7)
    mappable = None
    for k, (ax, sram) in enumerate(zip(axes[1:], shown)):
        mappable = draw_map(ax, sram, ref, vmin, vmax)
        row, col = cells[k].tolist()
        ax.set_title(f"cell {k} ({row}, {col})" + (f"\n{float(sram.min()):.3g}-{float(sram.max()):.3g}"
                                                    if normalize == "none" else ""), fontsize=7)
    if colorbar and mappable is not None:
        units = {"mean": "probability per reference cell (per step)", "sum": "sum over steps"}[view]
        add_colorbar(fig, mappable, axes[1:1 + len(shown)], normalize, units)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_words(maps: AttributionMaps, layer: str, image=None, *, words: Sequence[str] | None = None,
               tokens: Sequence[int] | None = None, normalize: str = "none", colorbar: bool = True,
               view: str = "mean", sample: int = 0, title: str | None = None) -> Figure:
    """DAAM's word heat maps (``AttributionMaps.daam_word_maps``) of ``layer`` over the generated image: one panel per
    token index in ``tokens`` (default: every token, at most 12), titled with ``words`` (``word_labels``)."""
    if view not in ("mean", "sum"):
        raise ValueError(f"view={view!r}: word maps are 'mean' (per step) or 'sum' (over steps)")
    stack = maps[sample].daam_word_maps(layer, reduce=view)[0]
    if words is not None and len(words) != stack.shape[0]:
        raise ValueError(f"words: {len(words)} labels for the {stack.shape[0]} tokens of {layer}")
    chosen = list(tokens) if tokens is not None else list(range(min(stack.shape[0], 12)))
    labels = [f"{t}: {words[t]}" if words is not None else f"token {t}" for t in chosen]
    units = {"mean": "the token's share of the position's attention (per step)", "sum": "sum over steps"}[view]
    return draw_maps(stack[chosen], labels, image, normalize=normalize, colorbar=colorbar, view=view, units=units,
                     title=title or f"DAAM word maps, {layer}")


def sample_figures(maps: AttributionMaps, generated, reference=None, *, sample: int = 0, normalize: str = "none",
                   view: str = "distribution", sram_cells=None, tokens: Sequence[str] | None = None
                   ) -> dict[str, Figure]:
    """Every figure of one sample: "<direction>_<family>" for each available direction and family, and "sram" when
    an SRAM layer was captured and ``sram_cells`` [(row, col), ...] are given."""
    figures = {}
    for direction, image in (("r2g", generated), ("g2r", reference)):
        if not getattr(maps, direction).available:
            continue
        for family in FAMILIES:
            figures[f"{direction}_{family}"] = plot(maps, image, family=family, direction=direction,
                                                    normalize=normalize, view=view, sample=sample, tokens=tokens)
    layers = [key[len("sram/"):] for key in maps.raw if key.startswith("sram/")]
    if layers and sram_cells is not None and reference is not None:
        figures["sram"] = plot_sram(maps, layers[0], sram_cells, generated, reference, normalize=normalize,
                                    sample=sample)
    return figures


def save_figures(figures: Mapping[str, Figure], directory: str | Path, dpi: int = 110) -> list[Path]:
    """Write each figure as ``<directory>/<name>.png``; returns the paths in the mapping's order."""
    return [save_figure(fig, Path(directory) / f"{name}.png", dpi=dpi, bbox_inches="tight")
            for name, fig in figures.items()]
