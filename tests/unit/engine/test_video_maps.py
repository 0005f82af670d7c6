"""The video-map contract (docs/video_maps.md) on maps built from known per-step distributions: the frame axis at
dim -3 of every family, R2G a distribution over the whole (frame, h, w) grid, G2R one per generated frame, and the
frame-level family."""
from __future__ import annotations

import pytest
import torch
from helpers.synthetic_video_maps import FRAMES, GRIDS, GROUPS, HEADS, REF, STEPS, video_maps

from i2am.engine import AttributionMaps


def test_families_keep_the_frame_axis_before_the_grid():
    maps, _ = video_maps()
    assert maps.frames == FRAMES and maps.r2g.frames == FRAMES
    assert maps.r2g.ulam.shape == (2, FRAMES, 4, 6)
    assert maps.r2g.tlam.shape == (2, GROUPS, FRAMES, 4, 6)
    assert maps.r2g.hlam.shape == (2, HEADS, FRAMES, 4, 6)
    assert maps.r2g.llam.shape == (2, len(GRIDS), FRAMES, 4, 6)
    assert maps.g2r.ulam.shape == (2, FRAMES, *REF)


def test_r2g_distribution_sums_to_one_over_the_whole_video_and_frame_mass_is_its_frame_marginal():
    maps, steps = video_maps()
    dist = maps.r2g.distribution("ulam")
    # float32 sums of ~100 cells after a bicubic resize and rescale: 1e-5 relative
    torch.testing.assert_close(dist.sum((-3, -2, -1)), torch.ones(2), rtol=1e-5, atol=1e-5)
    expected = torch.stack([s.sum((-2, -1)).mean((1, 2)) for s in steps.values()]).mean(0)   # [B, F]
    torch.testing.assert_close(maps.r2g.frame_mass("ulam"), expected, rtol=1e-5, atol=1e-6)
    assert maps.r2g.frame_mass("tlam").shape == (2, GROUPS, FRAMES)


def test_g2r_keeps_one_distribution_per_generated_frame():
    maps, _ = video_maps()
    per_frame = maps.g2r.distribution("ulam")
    torch.testing.assert_close(per_frame.sum((-2, -1)), torch.ones(2, FRAMES), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="defined for R2G"):
        maps.g2r.frame_mass()


def test_per_group_mean_divides_each_group_by_its_steps():
    maps, _ = video_maps()
    mean = maps.r2g.mean("tlam")
    torch.testing.assert_close(mean * (STEPS // GROUPS), maps.r2g.tlam)


def test_image_maps_have_no_frame_axis():
    maps, _ = video_maps()
    image = AttributionMaps({k: v[:, :, :, 0] for k, v in maps.raw.items()},
                            {**maps.meta, "layers": [{**m, "query_grid": m["query_grid"][1:]}
                                                     for m in maps.meta["layers"]]})
    assert image.frames is None and image.r2g.frames is None
    with pytest.raises(ValueError, match="needs video maps"):
        image.r2g.frame_mass()


def test_layers_with_different_frame_counts_are_refused():
    maps, _ = video_maps()
    raw = dict(maps.raw)
    raw["r2g/blocks.1.attn2"] = raw["r2g/blocks.1.attn2"][:, :, :, :2]
    with pytest.raises(ValueError, match="different frame counts"):
        _ = AttributionMaps(raw, maps.meta).r2g.frames
