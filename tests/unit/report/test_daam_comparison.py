"""The DAAM comparison's DAAM panel: DAAM's word maps summed over every reference token, from an SRAM layer (all patch
embeddings) or, for single-token layers, the one token's softmax over one key; 1 per step at every position."""
import pytest
import torch
from helpers.synthetic_maps import R2G_GRIDS, SRAM_LAYER, synthetic_maps

from i2am.engine import AttributionMaps
from i2am.report.artifacts.daam_comparison import daam_whole_reference


def test_all_patch_embeddings_sum_to_one_per_position_up_to_rounding():
    maps = synthetic_maps()
    daam, source = daam_whole_reference(maps)
    assert daam.shape == R2G_GRIDS[SRAM_LAYER] and source.startswith(f"24 tokens of {SRAM_LAYER}")
    torch.testing.assert_close(daam, torch.ones_like(daam), rtol=0, atol=1e-5)


def test_one_cls_token_gives_exact_ones_on_the_generated_grid():
    base = synthetic_maps()
    raw = {k: v for k, v in base.raw.items() if k.startswith("r2g/")}
    layers = [{**m, "ref_grid": [1, 1], "degenerate_g2r": True} for m in base.meta["layers"]]
    daam, source = daam_whole_reference(AttributionMaps(raw, {**base.meta, "layers": layers}))
    assert torch.equal(daam, torch.ones(8, 8)) and "one key" in source


def test_spatial_tokens_without_sram_are_refused():
    base = synthetic_maps()
    raw = {k: v for k, v in base.raw.items() if not k.startswith("sram/")}
    with pytest.raises(ValueError, match="capture.sram_layers"):
        daam_whole_reference(AttributionMaps(raw, base.meta))
