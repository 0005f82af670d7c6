"""Figures of video maps (docs/video_maps.md): ``frame_strip``, a family of one sample as one row of panels per map,
one panel per latent frame, on one colour scale; ``save_animation``, an animated GIF or WebP of one map over the
frames (Pillow). Maps are drawn cell by cell over the video frame each latent frame covers when the decoded video is
given: latent frame 0 is video frame 0, latent frame t >= 1 covers video frames (t - 1) * r + 1 ... t * r with the
VAE's temporal ratio r (``maps.meta["video"]["temporal_ratio"]``). Maps whose frame 0 is a later latent frame
(LTX-2: the generated frames 1.., ``maps.meta["video"]["first_latent_frame"]``) are drawn over the frames they cover;
the video frames before them (LTX-2's reference) are shown without a map."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from i2am.engine.maps import AttributionMaps
from i2am.engine.render import overlay
from i2am.viz.plot import VIEW_UNITS, _check, _grid, _limits, add_colorbar, as_image, draw_map, family_maps

FORMATS = (".gif", ".webp")


def temporal_ratio(maps: AttributionMaps) -> int:
    """Video frames per latent frame after the first (Wan's VAE: 4); 1 when the maps do not say."""
    return int(maps.meta.get("video", {}).get("temporal_ratio", 1))


def first_latent_frame(maps: AttributionMaps) -> int:
    """The latent frame of the maps' frame 0 (LTX-2: 1, the first generated frame); 0 when the maps do not say."""
    return int(maps.meta.get("video", {}).get("first_latent_frame", 0))


def latent_frame_of(video_frame: int, ratio: int) -> int:
    """The latent frame covering a video frame: frame 0 alone, then ``ratio`` video frames per latent frame."""
    return 0 if video_frame == 0 else (video_frame - 1) // ratio + 1


def video_frame_of(latent_frame: int, ratio: int) -> int:
    """The last video frame a latent frame covers (the one drawn under it in a strip)."""
    return latent_frame * ratio


def _video_maps(maps: AttributionMaps, family: str, direction: str, view: str, sample: int):
    stack, labels = family_maps(maps, family, direction, view, sample)      # [K, F, h, w]
    if getattr(maps, direction).frames is None:
        raise ValueError(f"{direction} maps of this capture have no frame axis (image maps): draw them with "
                         f"i2am.viz.plot.plot")
    return stack, labels


def _frame_images(video, count: int, ratio: int, first: int) -> list[np.ndarray | None]:
    if video is None:
        return [None] * count
    frames = [as_image(f) for f in video]
    return [frames[min(video_frame_of(first + t, ratio), len(frames) - 1)] for t in range(count)]


def frame_strip(maps: AttributionMaps, video=None, *, family: str = "ulam", direction: str = "r2g",
                view: str = "distribution", normalize: str = "none", sample: int = 0, colorbar: bool = True,
                title: str | None = None) -> Figure:
    """One row per map of the family (ULAM: one row), one panel per latent frame, on one colour scale. ``video``: the
    decoded frames (PIL images or arrays [H, W, 3]) to draw R2G maps over; G2R maps over tokens (Wan's CLIP image
    tokens, text) are drawn as one frames x tokens image per map."""
    _check(view, normalize)
    stack, labels = _video_maps(maps, family, direction, view, sample)
    count = stack.shape[1]
    if direction == "g2r" and maps.g2r_on_tokens:
        return _token_strip(stack, labels, normalize, view, colorbar, title)
    shown, vmin, vmax = _limits(stack.float().cpu(), normalize)
    ratio, first = temporal_ratio(maps), first_latent_frame(maps)
    images = _frame_images(video if direction == "r2g" else None, count, ratio, first)
    fig, axes, _ = _grid(len(shown) * count, columns=count)
    mappable = None
    for row, (maps_of_row, label) in enumerate(zip(shown, labels)):
        for t in range(count):
            ax = axes[row * count + t]
            mappable = draw_map(ax, maps_of_row[t], images[t], vmin, vmax)
            ax.set_title(f"frame {first + t}" + (f" (video {video_frame_of(first + t, ratio)})" if ratio > 1 else ""),
                         fontsize=7)
            if t == 0:
                ax.set_ylabel(label, fontsize=7)
    if colorbar and mappable is not None:
        add_colorbar(fig, mappable, axes, normalize, VIEW_UNITS[view])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _token_strip(stack, labels, normalize, view, colorbar, title) -> Figure:
    values, vmin, vmax = _limits(stack.float().cpu().flatten(-2)[..., None, :], normalize)   # [K, F, 1, T]
    fig, axes, _ = _grid(len(values), columns=1)
    mappable = None
    for ax, per_frame, label in zip(axes, values[:, :, 0], labels):
        mappable = ax.imshow(per_frame.numpy(), cmap="jet", vmin=vmin, vmax=vmax, aspect="auto",
                             interpolation="nearest")
        ax.set_yticks(range(per_frame.shape[0]))
        ax.tick_params(labelsize=6)
        ax.set_ylabel("latent frame", fontsize=7)
        ax.set_xlabel("reference token", fontsize=7)
        ax.set_title(label, fontsize=7)
    if colorbar and mappable is not None:
        add_colorbar(fig, mappable, axes[:len(values)], normalize, VIEW_UNITS[view].replace("cell", "token"))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def animation_frames(maps: AttributionMaps, video=None, *, family: str = "ulam", index: int = 0,
                     view: str = "distribution", sample: int = 0, size: tuple[int, int] | None = None
                     ) -> list[np.ndarray]:
    """The uint8 RGB frames of ``save_animation``: the R2G map ``index`` of the family at each frame, on one colour
    scale (0 to the largest value over all frames), cell by cell; over each decoded video frame when ``video`` is
    given (one frame per video frame), else alone (one frame per latent frame, ``size`` (H, W) pixels)."""
    stack, _ = _video_maps(maps, family, "r2g", view, sample)
    grids = stack[index].float().cpu()                                   # [F, h, w]
    scaled = (grids / max(float(grids.max()), 1e-12)).numpy()
    if video is None:
        height, width = size or (grids.shape[-2] * 16, grids.shape[-1] * 16)
        return [_cells(matplotlib.colormaps["jet"](m)[..., :3], height, width) for m in scaled]
    ratio, first = temporal_ratio(maps), first_latent_frame(maps)
    out = []
    for v, frame in enumerate(video):
        image = np.asarray(as_image(frame))
        image = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        index = latent_frame_of(v, ratio) - first
        if index < 0:   # a frame before the mapped ones (LTX-2's reference frame): no map
            out.append(image[..., :3].copy())
            continue
        cells = _cells(scaled[min(index, len(scaled) - 1)][..., None], *image.shape[:2])[..., 0]
        out.append(overlay(image[..., :3], cells / 255.0))
    return out


def _cells(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """A [h, w, C] array in [0, 1] as uint8 pixels [H, W, C], each cell a block (nearest, like the strips)."""
    rows = np.arange(height) * values.shape[0] // height
    cols = np.arange(width) * values.shape[1] // width
    return (np.clip(values[rows][:, cols], 0, 1) * 255).round().astype(np.uint8)


def save_animation(maps: AttributionMaps, path: str | Path, video=None, *, fps: float = 4.0, **kwargs) -> Path:
    """Write ``animation_frames(maps, video, **kwargs)`` as an animated GIF or WebP (by the suffix of ``path``),
    looping, ``fps`` frames per second; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"save_animation({str(path)!r}): write a {' or '.join(FORMATS)} file")
    frames = [Image.fromarray(f) for f in animation_frames(maps, video, **kwargs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"lossless": True} if path.suffix.lower() == ".webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0, **extra)
    return path

