"""Video figures (i2am.viz.video): frame strips draw each latent frame's map as it is, the animation's frames are
the maps' colours cell by cell (WebP losslessly, GIF by count), and plot() draws video maps as a strip."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from helpers.synthetic_video_maps import FRAMES, HEADS, video_maps
from PIL import Image

from i2am.engine import AttributionMaps
from i2am.viz.plot import plot
from i2am.viz.video import animation_frames, frame_strip, latent_frame_of, save_animation


def _with_ratio(maps: AttributionMaps, ratio: int) -> AttributionMaps:
    return AttributionMaps(maps.raw, {**maps.meta, "video": {"temporal_ratio": ratio}})


def _drawn(fig) -> list[np.ndarray]:
    return [np.asarray(ax.images[-1].get_array()) for ax in fig.axes if ax.images]


def test_latent_frames_cover_the_first_video_frame_alone_then_ratio_frames_each():
    assert [latent_frame_of(v, 4) for v in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]


def test_frame_strip_draws_every_latent_frame_of_every_map():
    maps, _ = video_maps()
    expected = maps.r2g.distribution("ulam")[1]
    drawn = _drawn(frame_strip(maps, family="ulam", sample=1))
    assert len(drawn) == FRAMES
    for t in range(FRAMES):
        np.testing.assert_array_equal(drawn[t], expected[t].numpy())
    assert len(_drawn(frame_strip(maps, family="hlam"))) == HEADS * FRAMES


def test_frame_strip_over_video_frames_and_plot_delegates():
    maps = _with_ratio(video_maps()[0], 4)
    video = [np.full((24, 36, 3), v * 20, dtype=np.uint8) for v in range(1 + 4 * (FRAMES - 1))]
    fig = frame_strip(maps, video)
    backgrounds = [int(ax.images[0].get_array()[0, 0, 0]) for ax in fig.axes if len(ax.images) == 2]
    assert backgrounds == [0, 80, 160]                      # video frames 0, 4, 8 under latent frames 0, 1, 2
    assert len(_drawn(plot(maps, video))) == FRAMES


def test_g2r_over_tokens_is_one_frames_by_tokens_image():
    maps, _ = video_maps()
    drawn = _drawn(frame_strip(maps, direction="g2r", view="mean"))
    np.testing.assert_allclose(drawn[0], maps.g2r.mean("ulam")[0].flatten(-2).numpy(), rtol=1e-6)


def test_image_maps_are_sent_to_plot():
    maps, _ = video_maps()
    image = AttributionMaps({k: v[:, :, :, 0] for k, v in maps.raw.items()},
                            {**maps.meta, "layers": [{**m, "query_grid": m["query_grid"][1:]}
                                                     for m in maps.meta["layers"]]})
    with pytest.raises(ValueError, match="no frame axis"):
        frame_strip(image)


def test_animation_frames_are_the_maps_colours_cell_by_cell(tmp_path):
    maps, _ = video_maps()
    frames = animation_frames(maps, size=(8, 12))
    grids = maps.r2g.distribution("ulam")[0]
    scaled = (grids / grids.max()).numpy()
    assert len(frames) == FRAMES and frames[0].shape == (8, 12, 3)
    for t in range(FRAMES):    # 4 x 6 cells on 8 x 12 pixels: cell (1, 2) is pixel (2, 4)
        colour = matplotlib.colormaps["jet"](scaled[t, 1, 2])[:3]
        np.testing.assert_array_equal(frames[t][2, 4], (np.asarray(colour) * 255).round().astype(np.uint8))
    webp = save_animation(maps, tmp_path / "r2g.webp", size=(8, 12))
    with Image.open(webp) as im:
        assert im.n_frames == FRAMES
        for t in range(FRAMES):
            im.seek(t)
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), frames[t])
    gif = save_animation(_with_ratio(maps, 4), tmp_path / "r2g.gif",
                         video=[np.full((8, 12, 3), 20 * v, np.uint8) for v in range(1 + 4 * (FRAMES - 1))])
    with Image.open(gif) as im:   # one frame per video frame (distinct frames: Pillow merges equal neighbours)
        assert im.n_frames == 1 + 4 * (FRAMES - 1)
    with pytest.raises(ValueError, match=r"\.gif or \.webp"):
        save_animation(maps, tmp_path / "r2g.mp4")


def test_maps_of_later_latent_frames_are_drawn_over_the_frames_they_cover():
    """LTX-2's maps start at latent frame 1 (frame 0 is the reference): each panel lies over its own video frame and
    the reference's video frame is animated without a map."""
    maps = video_maps()[0]
    maps = AttributionMaps(maps.raw, {**maps.meta, "video": {"temporal_ratio": 4, "first_latent_frame": 1}})
    video = [np.full((24, 36, 3), v * 10, dtype=np.uint8) for v in range(1 + 4 * FRAMES)]
    fig = frame_strip(maps, video)
    backgrounds = [int(ax.images[0].get_array()[0, 0, 0]) for ax in fig.axes if len(ax.images) == 2]
    assert backgrounds == [40, 80, 120]                     # video frames 4, 8, 12 under latent frames 1, 2, 3
    frames = animation_frames(maps, video)
    np.testing.assert_array_equal(frames[0], video[0])      # the reference frame: no map
    assert not np.array_equal(frames[1], video[1])
