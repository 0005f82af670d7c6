"""Per-sample figure panels of one attribution run: overview, TLAM, HLAM, LLAM and SRAM.

Display reading: the ``clean`` preset of ``i2am.engine.render.to_image`` (high = attributed, values <= 0.4 shown
as 0), with the official single-token R2G inversion (docs/method.md §3.6) applied when every R2G layer has one reference
token. Metrics never read these PNGs; they are computed from the raw maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from i2am.data import schema
from i2am.engine import AttributionMaps
from i2am.engine.render import to_image
from i2am.measures.tryon_baselines import paired_ssim
from i2am.viz.canvas import new_figure, save_figure
from i2am.viz.figures import image_axes, overlay, to_uint8_image
from i2am.viz.plot import (
    VIEW_UNITS,
    add_colorbar,
    draw_map,
    draw_maps,
    family_maps,
    grid_figsize,
    grid_shape,
    plot,
    plot_sram,
)

RED = np.array([255, 0, 0], dtype=np.uint8)


def r2g_inverted(maps: AttributionMaps) -> bool:
    """The official reading of single-token models: R2G attribution = 1 - map (docs/method.md §3.6)."""
    refs = [m.get("ref_grid") for m in maps.meta["layers"] if f"r2g/{m['name']}" in maps.raw]
    return bool(refs) and all(r is not None and int(np.prod(r)) == 1 for r in refs)


def display_maps(grid_maps: torch.Tensor, size: tuple[int, int], direction: str, invert: bool = False) -> np.ndarray:
    """[..., h, w] raw maps -> [..., H, W] float attribution in [0, 1] for display."""
    return to_image(grid_maps, size, direction, preset="clean", invert=invert and direction == "r2g").numpy()


def family_tiles(grid_maps: torch.Tensor, base: np.ndarray | None, size: tuple[int, int], direction: str,
                 labels: list[str], invert: bool = False) -> list[tuple[str, np.ndarray]]:
    """One titled tile per map: an overlay on ``base`` when given, else the bare map."""
    shown = display_maps(grid_maps, size, direction, invert)
    if base is None:
        return list(zip(labels, shown))
    return [(label, overlay(base, m)) for label, m in zip(labels, shown)]


def sram_query_cells(query_grid: tuple[int, int], region: torch.Tensor | None = None) -> torch.Tensor:
    """A 3x3 block of neighbouring cells of the query grid, centred on the try-on region's centroid (the grid's centre
    without a region): [9, 2] (row, col), row-major. ``region``: [H, W] or [1, H, W], 1 on the generated region."""
    qh, qw = query_grid
    if qh < 3 or qw < 3:
        raise ValueError(f"a 3x3 SRAM grid needs a query grid of at least 3x3, got {qh}x{qw}")
    centre = torch.tensor([(qh - 1) / 2, (qw - 1) / 2])
    if region is not None:
        cells = F.interpolate(region.float().reshape(1, 1, *region.shape[-2:]), size=(qh, qw), mode="nearest")[0, 0]
        inside = torch.nonzero(cells > 0).float()
        if len(inside):
            centre = inside.mean(0)
    row = int(centre[0].round().clamp(1, qh - 2))
    col = int(centre[1].round().clamp(1, qw - 2))
    offsets = torch.tensor([(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    return offsets + torch.tensor([row, col])


def mark_cells(image: np.ndarray, grid: tuple[int, int], cells: torch.Tensor) -> np.ndarray:
    """The image bicubically downsampled to the layer grid, the chosen cells painted red (the paper's SRAM marker),
    upsampled back to about the image's size with nearest neighbours so each cell stays a visible square."""
    small = cv2.resize(image, (grid[1], grid[0]), interpolation=cv2.INTER_CUBIC)
    small[cells[:, 0].numpy(), cells[:, 1].numpy()] = RED
    scale = max(1, image.shape[0] // grid[0])
    return np.repeat(np.repeat(small, scale, axis=0), scale, axis=1)


def save_sram_figure(path: Path, marked: np.ndarray, tiles: list[tuple[str, np.ndarray]], title: str) -> Path:
    """The marked generated grid on the left, the 3x3 SRAM grid on the right (same row-major order as the cells)."""
    figure = new_figure(figsize=(7.2, 3.6))
    grid = figure.add_gridspec(3, 5)
    left = figure.add_subplot(grid[:, :2])
    left.imshow(marked)
    left.set_title("generated, layer grid, chosen cells", fontsize=7)
    image_axes(left)
    for k, (name, tile) in enumerate(tiles):
        ax = figure.add_subplot(grid[k // 3, 2 + k % 3])
        ax.imshow(tile) if tile.dtype == np.uint8 else ax.imshow(tile, cmap="jet", vmin=0, vmax=1)
        ax.set_title(name, fontsize=6)
        image_axes(ax)
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def layer_labels(names: list[str]) -> list[str]:
    """"enc k" / "dec k" (1-based within the encoder or decoder, the paper's LLAM numbering for the decoder)."""
    labels, counts = [], {"enc": 0, "dec": 0, "mid": 0}
    for name in names:
        part = "dec" if "up_blocks" in name or "output_blocks" in name else "mid" if "mid" in name else "enc"
        counts[part] += 1
        labels.append(f"{part} {counts[part]}" if part != "mid" else "mid")
    return labels


@dataclass
class SampleView:
    """One sample of a run, ready to draw: its maps (batch of one), images (uint8) and try-on region."""
    sample_id: str
    maps: AttributionMaps
    generated: np.ndarray
    reference: np.ndarray | None = None
    agnostic: np.ndarray | None = None
    region: torch.Tensor | None = None          # [H, W], 1 on the generated region
    target: np.ndarray | None = None            # the ground truth (paired data)

    @classmethod
    def from_inputs(cls, sample_id: str, maps: AttributionMaps, generated: np.ndarray,
                    inputs: dict | None = None, paired: bool = True) -> SampleView:
        """paired: the inputs' person image is this sample's ground truth (an unpaired run's is not: no target)."""
        inputs = inputs or {}
        image = lambda key: to_uint8_image(inputs[key]) if key in inputs else None
        region = inputs.get(schema.INPAINT_MASK)
        return cls(sample_id, maps, generated, image(schema.REFERENCE), image(schema.AGNOSTIC),
                   None if region is None else region[0], image(schema.IMAGE) if paired else None)

    def ssim(self, image: np.ndarray) -> float | None:
        """SSIM of ``image`` (uint8 [H, W, 3]) to the ground truth, or None without one (or at another size)."""
        if self.target is None or self.target.shape != image.shape:
            return None
        as_tensor = lambda a: torch.tensor(a).permute(2, 0, 1)[None].float() / 127.5 - 1
        return float(paired_ssim(as_tensor(image), as_tensor(self.target))[0])

    @property
    def invert(self) -> bool:
        return r2g_inverted(self.maps)

    def direction(self, name: str):
        """(DirectionMaps or None, base image or None, display size) of "r2g" or "g2r"."""
        maps = getattr(self.maps, name)
        if name == "r2g":
            return (maps if maps.available else None), self.generated, self.generated.shape[:2]
        size = self.reference.shape[:2] if self.reference is not None else self.generated.shape[:2]
        return (maps if maps.available else None), self.reference, size

    def tiles(self, direction: str, family: str, labels: list[str] | None = None, index=None
              ) -> list[tuple[str, np.ndarray]]:
        """Overlays (or bare maps) of one family; ``index`` picks maps of a family stack (e.g. LLAM layers)."""
        maps, base, size = self.direction(direction)
        if maps is None:
            return []
        stack = getattr(maps, family)[0]
        stack = stack[None] if family == "ulam" else stack
        if index is not None:
            stack = stack[list(index)]
        labels = labels or [f"{direction.upper()} {family.upper()} {k}" for k in range(stack.shape[0])]
        return family_tiles(stack, base, size, direction, labels, self.invert)

    def sram(self) -> tuple[str, tuple[int, int], torch.Tensor, np.ndarray, list[tuple[str, np.ndarray]]] | None:
        """(layer, query grid, the 3x3 cells, the marked generated grid, the 9 SRAM tiles) or None without SRAM."""
        layers = [k[len("sram/"):] for k in self.maps.raw if k.startswith("sram/")]
        if not layers:
            return None
        layer = layers[0]
        grid = tuple(self.maps.layer_meta(layer)["query_grid"])
        cells = sram_query_cells(grid, self.region)
        _, base, size = self.direction("g2r")
        tiles = family_tiles(self.maps.sram(layer, points=cells)[0], base, size, "g2r",
                             [f"cell ({r}, {c})" for r, c in cells.tolist()])
        return layer, grid, cells, mark_cells(self.generated, grid, cells), tiles


def _overview(view: SampleView, name: str):
    """The sample's images, then its R2G ULAM over the generated image and G2R ULAM over the reference, each map drawn
    as it is (probability per cell, per step) with its own colour bar."""
    ssim = view.ssim(view.generated)
    shown = (("reference", view.reference), ("agnostic input", view.agnostic), ("ground truth", view.target),
             ("generated" + ("" if ssim is None else f" (SSIM {ssim:.3f})"), view.generated))
    images = [(label, image) for label, image in shown if image is not None]
    maps = [(direction, base) for direction, base in (("r2g", view.generated), ("g2r", view.reference))
            if view.direction(direction)[0] is not None and not (direction == "g2r" and view.maps.g2r_on_tokens)]
    figure = new_figure(figsize=grid_figsize(1, len(images) + len(maps)))
    axes = figure.subplots(1, len(images) + len(maps), squeeze=False)[0]
    for ax, (label, image) in zip(axes, images):
        ax.imshow(image)
        ax.set_title(label, fontsize=7)
        image_axes(ax)
    for ax, (direction, base) in zip(axes[len(images):], maps):
        stack, labels = family_maps(view.maps, "ulam", direction)
        shown_map, vmin, vmax = stack[0], 0.0, max(float(stack.max()), 1e-12)
        add_colorbar(figure, draw_map(ax, shown_map, base, vmin, vmax), [ax], "none", VIEW_UNITS["distribution"])
        note = " (1 token: paper reads 1 - map)" if direction == "r2g" and view.invert else ""
        ax.set_title(f"{labels[0]}{note}\n{float(shown_map.min()):.3g}-{float(shown_map.max()):.3g}", fontsize=7)
        image_axes(ax)
    figure.suptitle(name, fontsize=9)
    return figure


def _family_rows(view: SampleView, family: str, name: str):
    """One row (a SubFigure drawn by ``i2am.viz.plot.plot``) per direction with maps; None without any."""
    directions = [(d, base) for d, base in (("r2g", view.generated), ("g2r", view.reference))
                  if view.direction(d)[0] is not None and not (d == "g2r" and view.maps.g2r_on_tokens)]
    if not directions:
        return None
    shapes = [grid_shape(getattr(view.direction(d)[0], family).shape[1]) for d, _ in directions]
    width = max(grid_figsize(*shape)[0] for shape in shapes)
    heights = [grid_figsize(*shape)[1] for shape in shapes]
    figure = new_figure(figsize=(width, sum(heights)))
    rows = figure.subfigures(len(directions), 1, squeeze=False, height_ratios=heights)[:, 0]
    for row, (direction, base), (_, columns) in zip(rows, directions, shapes):
        plot(view.maps, base, family=family, direction=direction, columns=columns, into=row)
    figure.suptitle(name, fontsize=9)
    return figure


def sample_panels(out_dir: str | Path, view: SampleView, title: str = "") -> list[tuple[str, Path]]:
    """Write the panels of one sample under ``out_dir``: [(caption, path)], drawn by ``i2am.viz.plot`` with honest
    ranges (per-step probabilities from 0 to the figure's largest value) and colour bars.

    overview: reference, agnostic input, ground truth and generated image (with its SSIM to the ground truth),
    R2G and G2R ULAM; tlam and hlam: one row per direction; llam: R2G, one panel per captured layer (mass-preserving
    resizes, so layers at different grids compare); sram: 3x3 generated cells (outlined) and their SRAMs.
    """
    out_dir, sid = Path(out_dir), view.sample_id
    name = f"{sid}: {title}" if title else sid
    save = lambda fig, stem: save_figure(fig, out_dir / f"{sid}_{stem}.png", dpi=90)
    written = [("overview", save(_overview(view, name), "overview"))]
    for family in ("tlam", "hlam"):
        figure = _family_rows(view, family, name)
        if figure is not None:
            written.append((family.upper(), save(figure, family)))
    r2g, _, _ = view.direction("r2g")
    if r2g is not None:
        labels = layer_labels(r2g.family_layers.get("llam") or r2g.names)
        stack, _ = family_maps(view.maps, "llam", "r2g")
        figure = draw_maps(stack, [f"R2G {label}" for label in labels], view.generated, title=name)
        written.append(("LLAM", save(figure, "llam")))
    layers = [k[len("sram/"):] for k in view.maps.raw if k.startswith("sram/")]
    if layers and view.reference is not None:
        grid = tuple(view.maps.layer_meta(layers[0])["query_grid"])
        figure = plot_sram(view.maps, layers[0], sram_query_cells(grid, view.region), view.generated, view.reference,
                           columns=5, title=f"{name} - SRAM at {layers[0]} ({grid[0]}x{grid[1]})")
        written.append(("SRAM", save(figure, "sram")))
    return written
