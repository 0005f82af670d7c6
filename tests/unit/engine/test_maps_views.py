"""The units of AttributionMaps' views: the families stay the raw sums (value-resized), ``mean`` is the sum over the
step count, ``distribution`` keeps every layer's mass (sums to 1 whatever the grid), SRAMs and DAAM word maps per step
are probabilities."""
import pytest
import torch
from helpers.synthetic_maps import GROUP_STEPS, R2G_GRIDS, SRAM_LAYER, STEPS, synthetic_maps

from i2am.engine.maps import FAMILIES, AttributionMaps, resize_clamp, resize_mass, steps_per_group

TOL = dict(rtol=1e-5, atol=1e-6)   # float32 sums of up to 64 cells


@pytest.fixture(scope="module")
def maps():
    return synthetic_maps()


def test_the_families_are_the_value_resized_sums_they_always_were(maps):
    layers = maps.r2g.layers
    resized = [resize_clamp(layers[n].sum(1), (8, 8)) for n in R2G_GRIDS]
    assert torch.equal(maps.r2g.ulam, torch.cat(resized, dim=1).mean(1))
    assert torch.equal(maps.r2g.llam, torch.stack([m.mean(1) for m in resized], dim=1))
    # value resizes: the 4x4 layer's map sums to 4 (grid ratio) x 5 (steps) on the 8x8 grid, the 8x8 one to 5
    sums = maps.r2g.llam.sum((-2, -1))
    torch.testing.assert_close(sums[:, 1], torch.full_like(sums[:, 1], float(STEPS)), **TOL)
    assert (sums[:, 0] > 3 * STEPS).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_mean_is_the_sum_over_the_recorded_steps(maps, family):
    for direction in ("r2g", "g2r"):
        directed = getattr(maps, direction)
        expected = getattr(directed, family)
        if family == "tlam":
            expected = expected / torch.tensor(GROUP_STEPS, dtype=torch.float32)[:, None, None]
        else:
            expected = expected / STEPS
        assert torch.equal(directed.mean(family), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_distribution_sums_to_one_on_the_common_grid_for_every_map(maps, family):
    for direction in ("r2g", "g2r"):
        sums = getattr(maps, direction).distribution(family).sum((-2, -1))
        torch.testing.assert_close(sums, torch.ones_like(sums), **TOL)


def test_resize_mass_keeps_each_maps_mass_and_is_the_identity_on_the_same_grid():
    x = torch.rand(3, 2, 5, 7, generator=torch.Generator().manual_seed(1))
    for size in ((10, 14), (3, 3), (16, 9)):
        torch.testing.assert_close(resize_mass(x, size).sum((-2, -1)), x.sum((-2, -1)), **TOL)
        assert (resize_mass(x, size) >= 0).all()
    assert torch.equal(resize_mass(x, (5, 7)), x)


def test_steps_per_group_follows_the_capture_rule_and_a_partial_run():
    assert steps_per_group({"num_steps": 5, "time_groups": 2}) == [3, 2]
    assert steps_per_group({"num_steps": 50, "time_groups": 5}) == [10] * 5
    assert steps_per_group({"num_steps": 10, "time_groups": 2, "steps_seen": 4}) == [4, 0]


def test_sram_mean_is_a_per_step_distribution_and_the_sum_over_steps_is_not(maps):
    cells = [(0, 0), (3, 5), (7, 7)]
    summed = maps.sram(SRAM_LAYER, points=cells)
    mean = maps.sram(SRAM_LAYER, points=cells, reduce="mean")
    assert torch.equal(mean, summed / STEPS)
    torch.testing.assert_close(mean.sum((-2, -1)), torch.ones(2, 3), **TOL)
    assert float(mean.max()) <= 1 and float(summed.max()) > 1
    with pytest.raises(ValueError, match="reduce='median'"):
        maps.sram(SRAM_LAYER, points=cells, reduce="median")


def test_daam_word_maps_are_the_sram_columns_and_add_up_to_one_per_position(maps):
    words = maps.daam_word_maps(SRAM_LAYER, reduce="mean")                    # [B, T, 8, 8]
    assert words.shape == (2, 24, 8, 8)
    column = maps.raw[f"sram/{SRAM_LAYER}"][:, :, 5].reshape(2, 8, 8) / STEPS
    assert torch.equal(words[:, 5], column)
    torch.testing.assert_close(words.sum(1), torch.ones(2, 8, 8), **TOL)    # hence their sum carries nothing
    with pytest.raises(KeyError, match="capture.sram_layers"):
        maps.daam_word_maps("down.attn2")


def test_mean_needs_the_step_count():
    bare = synthetic_maps()
    meta = {k: v for k, v in bare.meta.items() if k != "num_steps"}
    with pytest.raises(ValueError, match="step count"):
        AttributionMaps(bare.raw, meta).r2g.mean("ulam")


def test_there_is_no_daam_direction_any_more():
    from i2am.engine.config import DIRECTIONS, CaptureConfig

    assert DIRECTIONS == ("r2g", "g2r")
    with pytest.raises(ValueError, match="unknown \\['daam'\\]"):
        CaptureConfig(directions=("r2g", "daam"))
