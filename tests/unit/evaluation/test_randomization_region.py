"""Randomisation within the region: the numbers and the maps figure, on a bare UNet."""
import json
import math

import pytest
import torch
from helpers.faithfulness_models import BareUNetAdapter, bare_sample

from i2am.engine import AttributionCapture, CaptureConfig
from i2am.evaluation.evaluator import SampleContext
from i2am.evaluation.randomization import SIMILARITIES, randomization_curves
from i2am.evaluation.randomization_evaluator import RandomizationEvaluator
from i2am.sampling.sampler import Sampler


def masked_sample() -> dict:
    sample = bare_sample()
    inpaint = torch.zeros(1, 1, 64, 64)
    inpaint[..., 16:64, 8:56] = 1                       # the generated region
    garment = torch.zeros(1, 1, 64, 48)
    garment[..., 8:56, 8:40] = 1                        # the reference's garment
    return sample | {"inpaint_mask": inpaint, "reference_mask": garment}


def test_curves_hold_whole_grid_and_within_region_numbers_and_the_first_seeds_maps():
    adapter = BareUNetAdapter().eval()
    sample = masked_sample()
    regions = {"r2g": sample["inpaint_mask"][0, 0], "g2r": sample["reference_mask"][0, 0]}
    result = randomization_curves(adapter, Sampler(num_steps=2), sample, CaptureConfig(num_steps=2, time_groups=1),
                                  modes=("cascading",), seeds=(0, 1), ssim_size=(32, 32), regions=regions)
    for d in ("r2g", "g2r"):
        for s in SIMILARITIES:
            assert len(result["cascading"][f"{d}_{s}_region"]) == len(result["stages"])
            assert f"{d}_{s}_region" in result["reference"] and f"{d}_{s}_region" in result["null_random"]
        # the region is a part of the grid: its numbers are not the whole grid's
        assert result["cascading"][f"{d}_spearman_region"] != result["cascading"][f"{d}_spearman"]
    maps = result["maps"]
    assert set(maps["original"]) == {"r2g", "g2r"} and len(maps["cascading"]) == len(result["stages"])


def test_the_evaluator_reports_region_numbers_and_draws_the_maps_figure(tmp_path):
    adapter = BareUNetAdapter().eval()
    sampler = Sampler(num_steps=2)
    sample = masked_sample()
    with AttributionCapture(adapter, CaptureConfig(num_steps=2, time_groups=1)) as cap:
        generated = (adapter.sample(sample, sampler=sampler)["images"] + 1) / 2
    ctx = SampleContext(sample_id="bare0", sample=sample, maps=cap.maps(), rendered={}, generated=generated,
                        adapter=adapter, sampler=sampler, sample_dir=tmp_path / "bare0")
    evaluator = RandomizationEvaluator(samples=1, modes=["cascading"], seeds=(0, 1), max_stages=2)
    evaluator.update(ctx)
    values = evaluator.compute()
    for d in ("r2g", "g2r"):
        assert math.isfinite(values[f"rand_{d}_spearman_region_cascade_final"])
        assert math.isfinite(values[f"rand_{d}_spearman_region_null_random"])
        assert values[f"rand_{d}_spearman_region_cascade_final"] != pytest.approx(
            values[f"rand_{d}_spearman_cascade_final"])
    figure = ctx.sample_dir / "randomization_maps.png"
    assert figure.is_file() and figure.stat().st_size > 2000
    assert "maps" not in json.loads((ctx.sample_dir / "randomization.json").read_text())   # tensors: figure only
