"""evaluator=faithfulness and evaluator=randomization inside `i2am attribute` (tiny models, toy world), on a bare UNet,
and their resume."""
import json
import math
import shutil

import pytest
import torch
from helpers.faithfulness_models import BareUNetAdapter, bare_sample
from helpers.tasks_util import read_metrics, run_task, toy_overrides

from i2am.adapters import create_model
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.evaluation.evaluator import SampleContext
from i2am.evaluation.faithfulness_evaluator import FaithfulnessEvaluator
from i2am.evaluation.randomization_evaluator import RandomizationEvaluator
from i2am.sampling.sampler import Sampler

CHEAP = ["evaluator_set=none", "+evaluator@evaluators.faithfulness=faithfulness",
         "+evaluator@evaluators.randomization=randomization",
         "evaluators.faithfulness.fractions=[0.0,0.5,1.0]", "evaluators.faithfulness.random_orders=2",
         "evaluators.faithfulness.proxy_steps=[0.5]", "evaluators.faithfulness.n_bootstrap=100",
         "evaluators.randomization.modes=[cascading]", "sampler.num_steps=1"]


def overrides(tmp, model, *extra):
    base = [o for o in toy_overrides(tmp) if not o.startswith(("model=", "data.limit="))]
    return [*base, f"model={model}", *CHEAP, *extra]


def live_stableviton(path):
    """stableviton-tiny with its zero convs made non-zero: freshly built, the warp blocks (the G2R layers) add 0 to
    the decoder, so the output cannot depend on the tokens they read (and the curves are rightly undefined)."""
    adapter = create_model("stableviton-tiny")
    torch.manual_seed(0)
    with torch.no_grad():
        for module in [*adapter.denoiser.warp_zero_convs, *(b.proj_out for b in adapter.denoiser.warp_blocks)]:
            module.weight.normal_(0, 0.3)
    torch.save(adapter.state_dict(), path)
    return path


@pytest.mark.parametrize("model,spatial", [("custom-tiny", True), ("stableviton-tiny", True), ("pbe-tiny", False),
                                           ("dcivton-tiny", False)])
def test_evaluators_run_inside_attribute(tmp_path, model, spatial):
    extra = [f"model.checkpoint={live_stableviton(tmp_path / 'sv.pt')}"] if model == "stableviton-tiny" else []
    metrics = run_task("attribute", overrides(tmp_path, model, "data.limit=2", "evaluators.faithfulness.samples=1",
                                              "evaluators.randomization.samples=1",
                                              "evaluators.randomization.max_stages=3", *extra))
    folder = next((tmp_path / "run" / "per_sample").glob("*/faithfulness.json")).parent
    record = json.loads((folder / "faithfulness.json").read_text())
    ids = {p.name[:-len(".json")] for p in (tmp_path / "run" / "metrics").glob("*.json")}
    assert record["r2g_counterfactual"]["donor_id"] in ids - {record["sample_id"]}   # the other sample's reference
    assert math.isfinite(metrics["r2g_cf_swap_spearman"]) and math.isfinite(metrics["r2g_cf_null_change"])
    assert metrics["r2g_cf_swap_change"] > 0   # another sample's reference, the same noise: the output changes
    assert math.isfinite(metrics["rand_r2g_spearman_noise"]) and math.isfinite(metrics["rand_r2g_ssim_cascade_final"])
    assert (folder / "randomization.json").is_file() and (folder / "randomization.png").is_file()
    if spatial:
        for key in ("faith_full_pixel_del_gap", "faith_proxy_latent_ins_auc", "faith_full_latent_del_auc_inverse",
                    "rand_g2r_spearman_cascade_final"):
            assert math.isfinite(metrics[key]), key
        assert record["g2r"]["fractions"] == [0.0, 0.5, 1.0] and (folder / "faithfulness_pixel.png").is_file()
        orders = 2 + 2 + 3                      # map, inverse, 2 random, 3 trivial (foreground, centre, blobs)
        rows = (1 + 1 + orders * 2 * 1) * (2 if model == "custom-tiny" else 1)   # one step; CFG doubles the batch
        assert record["g2r"]["cost"]["full"]["unet_rows"] == rows
    else:   # PBE, DCI-VTON: one CLIP token, no G2R map, so no deletion curves; the R2G counterfactuals still run
        assert "g2r" not in record and math.isnan(metrics["faith_full_pixel_del_gap"])


def test_evaluators_resume_with_the_same_subset_and_summaries(tmp_path):
    extra = ("data.limit=3", "data.batch_size=1", "evaluators.faithfulness.samples=2",
             "evaluators.randomization.samples=1", "evaluators.randomization.max_stages=2", "sampler.guidance=1",
             "evaluators.faithfulness.modes=[full]", "evaluators.faithfulness.figures=false",
             "evaluators.randomization.figures=false")
    reference = run_task("attribute", overrides(tmp_path, "custom-tiny", *extra))
    run = tmp_path / "run"
    ids = sorted(p.name[:-len(".json")] for p in (run / "metrics").glob("*.json"))
    evaluated = sorted(p.parent.name for p in (run / "per_sample").glob("*/faithfulness.json"))
    assert len(ids) == 3 and len(evaluated) == 2 and reference["faith_n_samples"] == 2
    # what a kill can leave: the 2nd sample's curves written but not its done marker, the 3rd not started
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    (killed / "metrics.json").unlink()
    for sample_id in ids[1:]:
        for suffix in (".json", ".states.pt"):
            (killed / "metrics" / f"{sample_id}{suffix}").unlink()
    shutil.rmtree(killed / "per_sample" / ids[2], ignore_errors=True)
    (killed / "per_sample" / ids[1] / "randomization.json").unlink(missing_ok=True)
    resumed = run_task("attribute", [*overrides(tmp_path, "custom-tiny", *extra), f"run_dir={killed}"])
    assert resumed == pytest.approx(reference, rel=1e-9, nan_ok=True)
    def numbers(metrics):   # metrics.json holds NaN as null
        return {k: float("nan") if v is None else v for k, v in metrics.items()}
    assert numbers(read_metrics(killed)) == pytest.approx(numbers(read_metrics(run)), rel=1e-9, nan_ok=True)
    assert sorted(p.parent.name for p in (killed / "per_sample").glob("*/faithfulness.json")) == evaluated


def test_evaluators_on_a_bare_unet(tmp_path):
    adapter = BareUNetAdapter().eval()
    sampler = Sampler(num_steps=3)
    sample = bare_sample()
    with AttributionCapture(adapter, CaptureConfig(num_steps=3, time_groups=1)) as cap:
        generated = (adapter.sample(sample, sampler=sampler)["images"] + 1) / 2
    ctx = SampleContext(sample_id="bare0", sample=sample, maps=cap.maps(), rendered={}, generated=generated,
                        adapter=adapter, sampler=sampler, sample_dir=tmp_path / "evaluators" / "bare0",
                        dataset=[bare_sample(0), bare_sample(1)])
    faith = FaithfulnessEvaluator(samples=1, fractions=[0, 0.5, 1], random_orders=2, n_bootstrap=100,
                                  region_key=None, reference_keys=["tokens"], figures=False)
    rand = RandomizationEvaluator(samples=1, modes=["cascading", "independent"], max_stages=3)
    for evaluator in (faith, rand):
        evaluator.update(ctx)
        values = evaluator.compute()
        state = evaluator.state()
        evaluator.reset()
        evaluator.merge(state)
        assert evaluator.compute() == pytest.approx(values, nan_ok=True)   # the state round-trips
    assert math.isfinite(values["rand_g2r_spearman_independent_mean"])
    assert (ctx.sample_dir / "faithfulness.json").is_file() and (ctx.sample_dir / "randomization.png").is_file()
    assert json.loads((ctx.sample_dir / "faithfulness.json").read_text())["r2g_counterfactual"]["donor_id"] == "bare1"
    alone = FaithfulnessEvaluator(samples=1, fractions=[0, 0.5, 1], random_orders=2, region_key=None,
                                  reference_keys=["tokens"], figures=False)
    with pytest.raises(ValueError, match="SampleContext.dataset is None"):
        alone.update(SampleContext(**{**ctx.__dict__, "dataset": None, "sample_dir": tmp_path / "alone" / "b"}))
    # the subset is bounded: a second sample is not evaluated
    second = SampleContext(**{**ctx.__dict__, "sample_id": "bare1", "sample_dir": tmp_path / "evaluators" / "bare1"})
    faith.reset()
    faith.update(second)
    assert faith.compute() == {} and not (tmp_path / "evaluators" / "bare1").exists()
