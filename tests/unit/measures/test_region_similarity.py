"""Within-region map similarity: only the region's cells count, so a change outside it changes nothing."""
import math

import pytest
import torch

from i2am.measures.curves import spearman
from i2am.measures.region_similarity import masked_crop, region_cells, region_similarity


def maps_and_region():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(16, 16, generator=g)
    b = a + 0.3 * torch.rand(16, 16, generator=g)
    region = torch.zeros(1, 1, 64, 64)
    region[..., 8:56, 4:36] = 1            # rows 2..13, cols 1..8 on the 16x16 grid
    return a, b, region, g


def test_changes_outside_the_region_are_ignored_inside_ones_are_not():
    a, b, region, g = maps_and_region()
    outside = ~region_cells(region, (16, 16))
    changed = torch.where(outside, torch.rand(16, 16, generator=g) * 10, b)
    assert region_similarity(a, b, region) == region_similarity(a, changed, region)
    assert region_similarity(a, b, region, size=(32, 32)) == region_similarity(a, changed, region, size=(32, 32))
    assert spearman(a, b) != spearman(a, changed)                      # the whole grid sees the change
    inside_changed = torch.where(outside, b, torch.rand(16, 16, generator=g))
    assert region_similarity(a, inside_changed, region)["spearman"] < region_similarity(a, b, region)["spearman"]


def test_identical_maps_inside_the_region_are_fully_similar():
    a, _, region, g = maps_and_region()
    other = torch.where(region_cells(region, (16, 16)), a, torch.rand(16, 16, generator=g))
    result = region_similarity(a, other, region)
    assert result["spearman"] == pytest.approx(1.0) and result["spearman_abs"] == pytest.approx(1.0)
    assert result["ssim"] == pytest.approx(1.0, abs=1e-5) and result["hog"] == pytest.approx(1.0)


def test_crop_is_the_regions_bounding_box_normalised_over_the_region():
    m = torch.arange(16.0).reshape(4, 4)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[1:3, 1:3] = True
    inside[1, 2] = False
    crop = masked_crop(m, inside)
    # region values 5, 9, 10: min-max over them; the excluded cell (1, 2) is 0
    torch.testing.assert_close(crop, torch.tensor([[0.0, 0.0], [0.8, 1.0]]))


def test_a_region_too_small_for_ssim_and_hog_gives_nan_not_a_number_from_padding():
    a, b, _, _ = maps_and_region()
    small = torch.zeros(16, 16)
    small[2:5, 2:5] = 1
    result = region_similarity(a, b, small)
    assert math.isfinite(result["spearman"]) and math.isnan(result["ssim"]) and math.isnan(result["hog"])
    assert all(math.isnan(v) for v in region_similarity(a, b, torch.zeros(16, 16)).values())
