"""Model-parameter randomisation: stages, exact restore, the similarity curves and the figure."""
import hashlib

import pytest
from helpers.faithfulness_models import BareUNetAdapter, bare_sample

from i2am.adapters import create_model
from i2am.adapters._anatomy import denoiser_stages
from i2am.engine import CaptureConfig
from i2am.evaluation.randomization import SIMILARITIES, randomization_curves, randomized
from i2am.sampling.sampler import Sampler
from i2am.viz.faithfulness import randomization_figure


def hashes(module):
    return {n: hashlib.sha256(t.detach().cpu().numpy().tobytes()).hexdigest()
            for n, t in [*module.named_parameters(), *module.named_buffers()]}


def stage_names(module, stage_modules):
    ids = {id(t) for m in stage_modules for t in [*m.parameters(), *m.buffers()]}
    return {n for n, t in [*module.named_parameters(), *module.named_buffers()] if id(t) in ids}


def test_unet_stages_run_from_the_output_side():
    unet = BareUNetAdapter().unet
    names = [n for n, _ in denoiser_stages(unet)]
    assert names == ["out", "up_blocks.1", "up_blocks.0", "mid_block", "down_blocks.1", "down_blocks.0", "in"]


def test_stableviton_stages_hold_the_warp_blocks_and_spatial_encoder():
    adapter = create_model("stableviton-tiny", device="meta")
    names = [n for n, _ in denoiser_stages(adapter.step_module, adapter.unet)]
    assert names[0] == "unet.out" and names[-1] == "unet.in"
    assert {"warp_blocks", "warp_zero_convs", "spatial_encoder"} <= set(names)
    assert names.index("warp_blocks") < names.index("unet.mid_block")


@pytest.mark.parametrize("cascade", [False, True])
def test_randomising_a_stage_changes_exactly_its_parameters_and_restores_them(cascade):
    unet = BareUNetAdapter().unet
    stages = denoiser_stages(unet)
    before = hashes(unet)
    for k in range(len(stages)):
        chosen = stages[:k + 1] if cascade else [stages[k]]
        owned = stage_names(unet, [m for _, mods in chosen for m in mods])
        with randomized(chosen, seed=0):
            during = hashes(unet)
        changed = {n for n in before if during[n] != before[n]}
        assert changed and changed <= owned, (chosen[-1][0], changed - owned)
        weights = {n for n in owned if n.endswith("weight") and "norm" not in n}
        assert weights <= changed, chosen[-1][0]                 # every conv / linear weight was re-drawn
        assert hashes(unet) == before                            # restored exactly


def test_randomized_restores_after_an_exception():
    unet = BareUNetAdapter().unet
    before = hashes(unet)
    with pytest.raises(RuntimeError, match="boom"), randomized(denoiser_stages(unet)[:2]):
        raise RuntimeError("boom")
    assert hashes(unet) == before


def test_randomization_curves_and_figure_on_a_bare_unet(tmp_path):
    adapter = BareUNetAdapter().eval()
    cfg = CaptureConfig(num_steps=3, time_groups=1)
    result = randomization_curves(adapter, Sampler(num_steps=3), bare_sample(), cfg, ssim_size=(16, 16))
    stages = result["stages"]
    keys = {f"{d}_{s}" for d in ("r2g", "g2r") for s in SIMILARITIES}
    for mode in ("cascading", "independent"):
        for key in keys:
            assert len(result[mode][key]) == len(stages)
            assert all(-1.0 <= v <= 1.0 for v in result[mode][key])
        assert sorted(result[f"{mode}_per_seed"]) == [0, 1, 2]          # three re-initialisation seeds
    assert set(result["reference"]) == keys and set(result["null_random"]) == keys   # the nulls
    # a fully re-initialised model no longer gives the original's R2G map
    assert result["cascading"]["r2g_spearman"][-1] < 0.9
    path = randomization_figure(tmp_path / "rand.png", stages, result["cascading"], result["reference"])
    assert path.is_file() and path.stat().st_size > 1000
