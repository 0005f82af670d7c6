"""IMACS (docs/method.md Appendix A step 6): hand-computed maps, the official quirks, and the dataset Metric."""
import math

import pytest
import torch

from i2am.evaluation import IMACS, ImacsEvaluator, imacs

# An official post-processed P (values >= 0.6 already set to 1) and a region covering the top row.
P = torch.tensor([[0.2, 1.0],
                  [0.5, 1.0]])
TOP_ROW = torch.tensor([[1.0, 1.0],
                        [0.0, 0.0]])


def test_official_r2g_by_hand_with_the_threshold_quirk():
    # A = 1 - P = [[0.8, 0], [0.5, 0]]: the P = 1 pixel (strongest raw attention) inside the region scores 0.
    # inside = 0.8 / 2 = 0.4; outside = 0.5 / 2 = 0.25; IMACS = 0.4 - 3 * 0.25 = -0.35
    assert imacs(P, TOP_ROW, "r2g", "official").item() == pytest.approx(-0.35, abs=1e-7)
    assert imacs(P, TOP_ROW, "r2g", "official", penalty=1.0).item() == pytest.approx(0.4 - 0.25, abs=1e-7)


def test_official_g2r_by_hand():
    expected = 0.8 / (2 + 1e-8) - 3 * 0.5 / (2 + 1e-8)
    assert imacs(P, TOP_ROW, "g2r", "official").item() == pytest.approx(expected, abs=1e-7)


def test_eps_only_where_the_official_code_has_it():
    empty = torch.zeros(2, 2)
    assert math.isnan(imacs(P, empty, "r2g", "official").item())  # 0 / 0, as numpy in cal_IMACS
    # G2R: inside = 0 / (0 + 1e-8) = 0; outside = (0.8 + 0 + 0.5 + 0) / (4 + 1e-8)
    assert imacs(P, empty, "g2r", "official").item() == pytest.approx(-3 * 1.3 / 4, abs=1e-6)
    # clean adds eps in both directions: A = P itself, outside mean = 2.7 / 4
    assert imacs(P, empty, "r2g", "clean").item() == pytest.approx(-3 * 2.7 / 4, abs=1e-6)


@pytest.mark.parametrize("direction", ["r2g", "g2r"])
def test_map_equal_to_the_mask_scores_one(direction):
    mask = torch.zeros(6, 5)
    mask[1:4, 2:5] = 1
    assert imacs(mask, mask, direction, "clean").item() == pytest.approx(1.0, abs=1e-6)
    # official: A = 1 - P, so the P that puts all attribution on the region is 1 - mask
    assert imacs(1 - mask, mask, direction, "official").item() == pytest.approx(1.0, abs=1e-6)
    # and the inverted map is the worst case: inside 0, outside 1 -> -3
    assert imacs(1 - mask, mask, direction, "clean").item() == pytest.approx(-3.0, abs=1e-6)


def test_batched_maps_with_channel_masks_match_one_by_one():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 8, 6, generator=generator)
    masks = (torch.rand(3, 1, 8, 6, generator=generator) > 0.5).float()
    batched = imacs(maps, masks, "g2r", "official")
    one_by_one = torch.stack([imacs(m, k[0], "g2r", "official") for m, k in zip(maps, masks)])
    assert batched.shape == (3,)
    torch.testing.assert_close(batched, one_by_one)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="does not match map"):
        imacs(torch.rand(4, 4), torch.ones(2, 2))
    with pytest.raises(ValueError, match="preset='fancy'"):
        imacs(torch.rand(4, 4), torch.ones(4, 4), preset="fancy")
    with pytest.raises(ValueError, match="direction='both'"):
        IMACS(direction="both")


def test_metric_equals_mean_of_functional_over_uneven_batches():
    generator = torch.Generator().manual_seed(1)
    maps = torch.rand(7, 16, 12, generator=generator)
    maps[maps >= 0.6] = 1.0  # like the official P
    masks = (torch.rand(7, 1, 16, 12, generator=generator) > 0.3).float()
    metric = IMACS("r2g", "official")
    for start, stop in ((0, 3), (3, 4), (4, 7)):
        metric.update(maps[start:stop], masks[start:stop])
    expected = imacs(maps, masks, "r2g", "official").double().mean()
    torch.testing.assert_close(metric.compute(), expected)
    assert int(metric.count) == 7


def test_evaluator_reports_stable_names():
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    evaluator = ImacsEvaluator(preset="clean")
    evaluator.update_maps(r2g_map=mask[:, 0], inpaint_mask=mask, g2r_map=1 - mask[:, 0], reference_mask=mask)
    result = evaluator.compute()
    assert result == pytest.approx({"imacs_g": 1.0, "imacs_r": -3.0}, abs=1e-6)
    only_r2g = ImacsEvaluator(directions=["r2g"])
    with pytest.raises(ValueError, match="g2r map"):
        only_r2g.update_maps(g2r_map=mask[:, 0], reference_mask=mask)


@pytest.mark.numeric
def test_states_reduce_like_ddp_ranks():
    # merge_state applies each state's dist_reduce_fx, as the all-gather of two DDP ranks would
    generator = torch.Generator().manual_seed(2)
    maps, masks = torch.rand(5, 8, 8, generator=generator), (torch.rand(5, 8, 8, generator=generator) > 0.5).float()
    rank0, rank1 = IMACS("g2r"), IMACS("g2r")
    rank0.update(maps[:2], masks[:2])
    rank1.update(maps[2:], masks[2:])
    rank0.merge_state(rank1)
    torch.testing.assert_close(rank0.compute(), imacs(maps, masks, "g2r").double().mean())


def test_evaluator_leaves_out_a_direction_that_scored_no_sample():
    """A G2R map over tokens is never rendered, so IMACS_r sees no sample: metrics.json carries imacs_g only."""
    evaluator = ImacsEvaluator()
    mask = torch.zeros(1, 1, 8, 6)
    mask[..., 2:6, 1:5] = 1
    evaluator.update_maps(r2g_map=torch.rand(1, 8, 6), inpaint_mask=mask)
    assert set(evaluator.compute()) == {"imacs_g"}


@pytest.mark.parametrize("direction", ["r2g", "g2r"])
def test_the_region_mask_scores_best_under_the_orientation_the_claims_use(direction):
    from i2am.evaluation.imacs import DECISION_PRESET

    g = torch.Generator().manual_seed(0)
    region = torch.zeros(1, 16, 12)
    region[:, 4:12, 3:9] = 1
    candidates = {"mask": region, "complement": 1 - region, "uniform": torch.full_like(region, 0.5),
                  **{f"random{k}": torch.rand(1, 16, 12, generator=g) for k in range(8)}}
    scores = {k: imacs(m, region, direction, DECISION_PRESET).item() for k, m in candidates.items()}
    assert max(scores, key=scores.get) == "mask", scores
    official = {k: imacs(m, region, direction, "official").item() for k, m in candidates.items()}
    assert min(official, key=official.get) == "mask"           # why the official orientation cannot decide
