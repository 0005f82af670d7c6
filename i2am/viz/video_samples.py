"""The attribute loop's files of a generated video (``model=diffusers`` image-to-video pipelines): the frames as one
strip PNG and as an animated GIF (``save_video``), and the per-sample figure of the video maps (``video_panel``): the
R2G ULAM frame strip over the frames, with an animation of it over every video frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from i2am.data.image_io import to_uint8_image
from i2am.engine.maps import AttributionMaps
from i2am.viz.canvas import save_figure
from i2am.viz.video import frame_strip, save_animation


def video_frames(video: torch.Tensor) -> list[np.ndarray]:
    """A video [3, T, H, W] in [-1, 1] -> T uint8 RGB frames [H, W, 3]."""
    return [to_uint8_image(video[:, t]) for t in range(video.shape[1])]


def save_video(video: torch.Tensor, strip_path: str | Path, animation_path: str | Path, fps: float = 4.0) -> None:
    """The frames of ``video`` ([3, T, H, W] in [-1, 1]) side by side as a PNG, and as a looping GIF."""
    frames = video_frames(video)
    strip_path, animation_path = Path(strip_path), Path(animation_path)
    for path in (strip_path, animation_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(frames, axis=1)).save(strip_path)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(animation_path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def video_panel(maps: AttributionMaps, video: torch.Tensor, path: str | Path, animation_path: str | Path,
                title: str | None = None) -> None:
    """The R2G ULAM of one sample's video maps as a frame strip over its frames (``path``) and as an animated GIF over
    every video frame (``animation_path``)."""
    frames = video_frames(video)
    save_figure(frame_strip(maps, frames, title=title), Path(path), dpi=110)
    save_animation(maps, animation_path, frames)
