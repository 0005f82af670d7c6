"""Localisation against ground-truth correspondence: hand-made toy scenes with hand-computed answers."""
import math

import pytest
import torch

from i2am.evaluation.localization_evaluator import LocalizationEvaluator, localization_verdict
from i2am.measures.localization import (
    argmax_location,
    bbox_mapping_sources,
    centroid_location,
    entropy_nats,
    grid_cells,
    mass_in_region,
    point_maps,
    true_source_cells,
)

# A 16x12 person image on a 4x3 query grid (4x4-pixel cells) and a 16x12 reference image on a 4x3 reference grid.
# The garment covers person rows 4..15 (query rows 1..3) and each covered pixel comes from the same pixel of the
# reference, so the true source of query cell (i, j) is reference cell (i, j).
GRID = (4, 3)


def toy_scene(batch=2):
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(12.0), indexing="ij")
    correspondence = torch.stack([rows, cols])[None].repeat(batch, 1, 1, 1)
    correspondence[:, :, :4] = -1
    region = torch.zeros(batch, 1, 16, 12)
    region[:, :, 4:] = 1
    return correspondence, region


def one_hot_srams(batch, points, grid=GRID):
    srams = torch.zeros(batch, len(points), *grid)
    srams[:, torch.arange(len(points)), points[:, 0], points[:, 1]] = 0.3  # any scale: normalised inside
    return srams


def test_true_sources_are_reference_cells_and_coverage_is_the_covered_share():
    correspondence, _ = toy_scene(1)
    correspondence[0, :, 4:6, 0:4] = -1  # cell (1, 0) only half covered: rows 6..7 remain
    source, coverage = true_source_cells(correspondence, GRID, GRID, (16, 12))
    assert coverage[0].tolist() == [0, 0, 0, 0.5, 1, 1, 1, 1, 1, 1, 1, 1]
    torch.testing.assert_close(source[0, 4], torch.tensor([1.0, 1.0]))
    # cell (1, 0) covered by rows 6..7: mean row 6.5 -> (6.5 + 0.5) * 4 / 16 - 0.5 = 1.25
    torch.testing.assert_close(source[0, 3], torch.tensor([1.25, 0.0]))
    assert torch.isnan(source[0, 0]).all()


def test_locations_entropy_and_point_maps_by_hand():
    prob = torch.zeros(1, 4, 3)
    prob[0, 1, 2], prob[0, 3, 0] = 0.75, 0.25
    torch.testing.assert_close(argmax_location(prob), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(centroid_location(prob), torch.tensor([[1.5, 1.5]]))
    assert entropy_nats(prob).item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    uniform = torch.full((1, 4, 3), 1 / 12)
    torch.testing.assert_close(argmax_location(uniform), torch.tensor([[1.5, 1.0]]))  # ties -> centre, not (0, 0)
    assert entropy_nats(uniform).item() == pytest.approx(math.log(12))
    splat = point_maps(torch.tensor([[2.25, 0.5]]), GRID)
    torch.testing.assert_close(centroid_location(splat), torch.tensor([[2.25, 0.5]]))
    assert splat.sum().item() == pytest.approx(1.0)
    assert splat[0, 2, 0] == pytest.approx(0.75 * 0.5)


def test_bbox_mapping_by_hand():
    _, region = toy_scene(1)  # try-on bbox rows [4, 16), cols [0, 12)
    garment = torch.zeros(1, 1, 16, 12)
    garment[:, :, 0:8, 2:10] = 1  # garment bbox rows [0, 8), cols [2, 10)
    mapped = bbox_mapping_sources(torch.tensor([[1, 0]]), GRID, region, garment, GRID)
    # centre (6, 2) -> relative (1/6, 1/6) -> (8/6, 2 + 8/6) px -> cells (8/6 * 4/16 - 0.5, (2 + 8/6) * 3/12 - 0.5)
    torch.testing.assert_close(mapped[0, 0], torch.tensor([8 / 6 / 4 - 0.5, (2 + 8 / 6) / 4 - 0.5]))


def test_map_that_peaks_at_the_true_source_has_zero_error_and_the_bbox_mapping_is_exact_here():
    correspondence, region = toy_scene()
    points = grid_cells(*GRID)
    evaluator = LocalizationEvaluator(radii=(1, 2))
    evaluator.update(one_hot_srams(2, points), points, GRID, correspondence, region, reference_mask=region,
                     r2g_map=region[:, 0, ::4, ::4] * 5.0)
    result = evaluator.compute()
    assert result["loc_n_queries"] == 2 * 9  # query row 0 lies outside the try-on region
    assert result["loc_err"] == pytest.approx(0.0) and result["loc_err_centroid"] == pytest.approx(0.0)
    assert result["loc_pointing"] == 1.0
    assert result["attn_entropy"] == pytest.approx(0.0) and result["attn_max_prob"] == pytest.approx(1.0)
    # garment placed identically on person and reference: the bounding-box mapping is the identity
    assert result["loc_err_bbox_baseline"] == pytest.approx(0.0, abs=1e-6)
    # centre prior: every query points at the grid centre (1.5, 1); mean distance over rows 1..3 / diagonal 5
    expected = sum(math.hypot(i - 1.5, j - 1) for i in (1, 2, 3) for j in (0, 1, 2)) / 9 / 5
    assert result["loc_err_centre_prior"] == pytest.approx(expected)
    assert result["attn_entropy_uniform"] == pytest.approx(math.log(12))
    # within 1 cell of (1.5, 1): only (1, 1) and (2, 1) at distance 0.5; (1, 0) etc. are at sqrt(1.25)
    assert result["loc_pointing_r1_centre_prior"] == pytest.approx(2 / 9)
    assert result["r2g_mass_in_region"] == pytest.approx(1.0)
    assert result["r2g_mass_in_region_uniform_baseline"] == pytest.approx(0.75)
    assert result["loc_localizes"] == 1.0


def test_a_collapse_onto_one_cell_never_passes_for_localisation():
    correspondence, region = toy_scene()
    points = grid_cells(*GRID)
    collapsed = one_hot_srams(2, torch.zeros_like(points))  # every query on reference cell (0, 0)
    evaluator = LocalizationEvaluator()
    evaluator.update(collapsed, points, GRID, correspondence, region, region)
    result = evaluator.compute()
    assert result["attn_entropy"] == pytest.approx(0.0) and result["attn_max_prob"] == pytest.approx(1.0)
    assert result["loc_err"] > result["loc_err_centre_prior"]
    assert result["loc_localizes"] == 0.0
    verdict = localization_verdict(result)
    assert not verdict.localizes and "entropy 0.00 nats" in verdict.reason


def test_verdict_tolerance():
    base = {"loc_err_bbox_baseline": 0.06, "loc_err_chance_baseline": 0.33, "loc_err_centre_prior": 0.18}
    assert localization_verdict(base | {"loc_err": 0.04}).localizes          # beats the bbox mapping
    assert localization_verdict(base | {"loc_err": 0.10}).localizes          # within +0.05 of it, < half of chance
    assert not localization_verdict(base | {"loc_err": 0.12}).localizes      # too far from the bbox mapping
    assert not localization_verdict(base | {"loc_err_chance_baseline": 0.15, "loc_err": 0.09}).localizes  # ~chance
    # close to a poor bbox mapping and below half of chance, but no better than pointing at the centre
    assert not localization_verdict(base | {"loc_err_bbox_baseline": 0.15, "loc_err": 0.16,
                                            "loc_err_centre_prior": 0.16}).localizes


def test_the_old_uniform_margin_key_is_refused_with_its_new_name():
    with pytest.raises(ValueError, match="renamed chance_margin"):
        LocalizationEvaluator(uniform_margin=0.5)


def test_the_centre_prior_differs_from_chance_and_chance_is_the_mean_of_seeded_random_maps():
    # sources at the grid's corners: the centre prior is off by the half diagonal, random maps point anywhere
    correspondence, region = toy_scene(1)
    points = grid_cells(*GRID)
    srams = one_hot_srams(1, points)
    first, again, one_draw = (LocalizationEvaluator(chance_draws=draws) for draws in (8, 8, 1))
    for evaluator in (first, again, one_draw):
        evaluator.update(srams, points, GRID, correspondence, region, region, sample_seed=3)
    result, repeated, single = first.compute(), again.compute(), one_draw.compute()
    assert result["loc_err_chance_baseline"] == repeated["loc_err_chance_baseline"]     # seeded
    assert result["loc_err_chance_baseline"] != single["loc_err_chance_baseline"]       # a mean over 8 maps
    assert result["loc_err_chance_baseline"] != pytest.approx(result["loc_err_centre_prior"], abs=0.02)
    # a flat map's tied maxima average to the centre: the old "uniform" number was the centre prior
    expected = sum(math.hypot(i - 1.5, j - 1) for i in (1, 2, 3) for j in (0, 1, 2)) / 9 / 5
    assert result["loc_err_centre_prior"] == pytest.approx(expected)
    assert result["attn_entropy_chance_baseline"] > result["attn_entropy_centre_prior"]


def test_localisation_against_each_baseline_is_paired_per_sample_with_the_exact_p():
    from scipy import stats

    correspondence, region = toy_scene(12)
    points = grid_cells(*GRID)
    generator = torch.Generator().manual_seed(0)
    srams = one_hot_srams(12, points) + 0.2 * torch.rand(12, len(points), *GRID, generator=generator)
    srams[::4] = torch.rand(3, len(points), *GRID, generator=generator)   # a few samples do not localise
    evaluator = LocalizationEvaluator()
    for index in range(12):      # one sample per update, as the attribution loop runs it
        evaluator.update(srams[index:index + 1], points, GRID, correspondence[index:index + 1],
                         region[index:index + 1], region[index:index + 1], sample_seed=index)
    result = evaluator.compute()
    per_sample = torch.cat(evaluator.sample_errors).numpy()
    for column, name in ((1, "chance_baseline"), (2, "centre_prior"), (3, "bbox_baseline")):
        gain = per_sample[:, column] - per_sample[:, 0]
        assert result[f"loc_gain_{name}_n"] == 12
        assert result[f"loc_gain_{name}"] == pytest.approx(gain.mean())
        assert result[f"loc_gain_{name}_p"] == stats.wilcoxon(gain, alternative="greater").pvalue
        assert result[f"loc_gain_{name}_lo"] <= gain.mean() <= result[f"loc_gain_{name}_hi"]   # n >= 10


def test_no_interval_below_ten_samples():
    correspondence, region = toy_scene(3)
    points = grid_cells(*GRID)
    evaluator = LocalizationEvaluator()
    evaluator.update(one_hot_srams(3, points), points, GRID, correspondence, region, region)
    result = evaluator.compute()
    assert result["loc_gain_chance_baseline_n"] == 3 and "loc_gain_chance_baseline_lo" not in result
    assert result["loc_gain_chance_baseline_min_p"] == 0.125


def test_accumulation_over_uneven_batches_equals_one_batch():
    correspondence, region = toy_scene(3)
    points = grid_cells(*GRID)
    srams = torch.rand(3, len(points), *GRID, generator=torch.Generator().manual_seed(0))
    whole, split = LocalizationEvaluator(), LocalizationEvaluator()
    whole.update(srams, points, GRID, correspondence, region, region)
    split.update(srams[:1], points, GRID, correspondence[:1], region[:1], region[:1])
    split.update(srams[1:], points, GRID, correspondence[1:], region[1:], region[1:])
    a, b = whole.compute(), split.compute()
    for name in ("loc_err", "loc_err_centroid", "loc_pointing", "attn_entropy", "loc_err_bbox_baseline"):
        assert a[name] == pytest.approx(b[name])


def test_mass_in_region_by_hand():
    r2g = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    region = torch.zeros(1, 1, 4, 4)
    region[..., 2:, :] = 1  # bottom row of cells
    share, area = mass_in_region(r2g, region)
    assert share.item() == pytest.approx(0.5) and area.item() == pytest.approx(0.5)


def test_on_the_toy_world_an_oracle_localises_and_the_baselines_rank_as_in_toyworld_md(tmp_path):
    from torch.utils.data import default_collate

    from i2am.data.toy import write_toy_vitonhd
    from i2am.data.vitonhd import VitonHDDataset

    root = write_toy_vitonhd(tmp_path, n_train=1, n_test=8, size=(64, 48), seed=0)
    dataset = VitonHDDataset(root, "test", "paired", size=(64, 48), extras=("correspondence",))
    batch = default_collate([dataset[i] for i in range(len(dataset))])
    query_grid, reference_grid = (16, 12), (8, 6)
    sources, _ = true_source_cells(batch["correspondence"], query_grid, reference_grid, (64, 48))
    oracle = point_maps(torch.nan_to_num(sources), reference_grid)  # SRAMs centred on the true sources
    evaluator = LocalizationEvaluator()
    evaluator.update(oracle, grid_cells(*query_grid), query_grid, batch["correspondence"], batch["inpaint_mask"],
                     batch["reference_mask"])
    result = evaluator.compute()
    assert result["loc_n_queries"] > 100
    # ~1e-4 of the diagonal on the body_surface world (a 200th of a cell): float32 centroids of one-hot maps
    assert result["loc_err_centroid"] == pytest.approx(0.0, abs=1e-3)
    assert result["loc_localizes"] == 1.0
    assert result["loc_err_bbox_baseline"] < 0.5 * result["loc_err_centre_prior"]
    assert result["loc_err_centre_prior"] < result["loc_err_chance_baseline"]
    assert result["attn_entropy_uniform"] == pytest.approx(math.log(48))
