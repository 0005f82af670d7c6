"""The paper's super-resolution figure: G2R maps over the LR input, R2G maps over the SR output (ULAM, TLAM, HLAM).

Row 1 shows the LR input (upsampled to output size), the output and, where known, the HR image. Row 2 overlays the
G2R ULAM, the TLAM panels (t = T ... 1) and the HLAM panels (one per head) on the LR input; row 3 the same R2G
families on the output. Maps go through ``i2am.engine.render.to_image`` and are drawn with the paper's
conventions (jet colour map, 0.7 image + 0.5 colour). Matplotlib runs on its Agg canvas, no global backend change.
"""
from __future__ import annotations

from pathlib import Path

import torch

from i2am.engine.render import overlay, to_image
from i2am.viz.canvas import new_figure, save_figure

IMAGE_WEIGHT, COLOUR_WEIGHT = 0.7, 0.5


def _family_panels(families, direction: str, index: int, size, preset: str) -> list[tuple[str, torch.Tensor]]:
    """[(title, [H, W] image-space map)] for ULAM, every TLAM group and every HLAM head of sample ``index``."""
    panels = []
    ulam = to_image(families.ulam[index], size, direction, preset)
    panels.append((f"{direction.upper()} ULAM", ulam))
    tlam = to_image(families.tlam[index], size, direction, preset)
    panels += [(f"TLAM {g + 1}", m) for g, m in enumerate(tlam)]
    hlam = to_image(families.hlam[index], size, direction, preset)
    panels += [(f"HLAM h{h + 1}", m) for h, m in enumerate(hlam)]
    return panels


def render_sr_figure(maps, lr: torch.Tensor, output: torch.Tensor, path: str | Path, *, index: int = 0,
                     hr: torch.Tensor | None = None, preset: str = "clean", metrics: dict | None = None,
                     panel_size: float = 1.6) -> Path:
    """Write the SR attribution figure of sample ``index`` to ``path`` (PNG) and return the path.

    maps: an ``AttributionMaps`` (or any object with ``.g2r`` and ``.r2g``, each with ``ulam`` [B, h, w],
        ``tlam`` [B, G, h, w] and ``hlam`` [B, N, h, w]).
    lr: [3, H, W] LR input at output size in [0, 1]; output, hr: [3, H, W] in [-1, 1].
    metrics: optional numbers for the output's title, e.g. {"PSNR": 24.1, "SSIM": 0.71}.
    """
    size = tuple(lr.shape[-2:])
    lr01 = lr.float().clamp(0, 1)
    out01 = ((output.float() + 1) / 2).clamp(0, 1)
    rows = [(lr01, _family_panels(maps.g2r, "g2r", index, size, preset)),
            (out01, _family_panels(maps.r2g, "r2g", index, size, preset))]
    columns = 1 + max(len(panels) for _, panels in rows)
    figure = new_figure(figsize=(panel_size * columns, panel_size * 3.3))
    axes = figure.subplots(3, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    output_title = "SR output" + "".join(f"  {k} {v:.3g}" for k, v in (metrics or {}).items())
    top = [("LR input", lr01), (output_title, out01)] + ([("HR", ((hr.float() + 1) / 2).clamp(0, 1))] if hr is not None
                                                          else [])
    for ax, (title, image) in zip(axes[0], top):
        ax.imshow(image.detach().cpu().permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=7)
    for row, (base, panels) in enumerate(rows, start=1):
        axes[row][0].imshow(base.detach().cpu().permute(1, 2, 0).numpy())
        axes[row][0].set_title("on LR input" if row == 1 else "on SR output", fontsize=7)
        for ax, (title, heat) in zip(axes[row][1:], panels):
            ax.imshow(overlay(base.detach().cpu().permute(1, 2, 0).numpy(), heat, IMAGE_WEIGHT, COLOUR_WEIGHT))
            ax.set_title(title, fontsize=7)
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)
