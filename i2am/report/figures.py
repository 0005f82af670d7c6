"""Figures of attribution maps: overlays in the paper's style and panels of map families."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] -> [H, W, 3] uint8."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def overlay(image: np.ndarray, attribution: torch.Tensor | np.ndarray, alpha_image: float = 0.7,
            alpha_map: float = 0.5) -> np.ndarray:
    """The paper's overlay, image*0.7 + jet(map)*0.5 (cv2.addWeighted saturates), in RGB (the official code's
    BGR/RGB mix-up is not reproduced: high attribution is red). attribution: [H, W] in [0, 1]."""
    a = np.asarray(attribution.detach().cpu() if torch.is_tensor(attribution) else attribution, dtype=np.float32)
    colour = plt.get_cmap("jet")(np.clip(a, 0, 1))[..., :3] * 255.0
    out = image.astype(np.float32) * alpha_image + colour * alpha_map
    return np.clip(out, 0, 255).round().astype(np.uint8)


def save_panel(path: str | Path, tiles: list[tuple[str, np.ndarray]], columns: int | None = None,
               title: str | None = None, tile_size: float = 1.6) -> Path:
    """A grid of titled tiles (uint8 RGB images or float maps shown with jet) written as one PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or len(tiles)
    rows = -(-len(tiles) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(tile_size * columns, tile_size * 1.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, tile) in zip(axes.flat, tiles):
        if tile.dtype == np.uint8:
            ax.imshow(tile)
        else:
            ax.imshow(tile, cmap="jet", vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
