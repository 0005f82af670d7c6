"""PASD and the faithfulness checks: ``PASDAdapter.run_loop`` is PASD's own loop (``own_loop``), so the G2R deletion /
insertion curves, the R2G counterfactuals (null = every PACA token knocked out) and the randomisation re-run it;
TokenKnockout works on its pixel-aware (PACA) layers. An adapter with a foreign start code and no loop of its own is
still refused. docs/faithfulness.md, "Models"."""
import json
import math
import shutil

import pytest
import torch
from helpers.faithfulness_models import RoutingAdapter, routing_sample
from helpers.tasks_util import read_metrics, run_task

from i2am.adapters import create_model
from i2am.adapters.pasd.sampling import start_latents
from i2am.engine import CaptureConfig
from i2am.engine.knockout import TokenKnockout
from i2am.evaluation.evaluator import SampleContext
from i2am.evaluation.faithfulness import cell_change, g2r_curves, r2g_counterfactuals, repeat_inputs, summarise_g2r
from i2am.evaluation.faithfulness_evaluator import FaithfulnessEvaluator
from i2am.evaluation.randomization import randomization_curves
from i2am.evaluation.rerun import require_sampler_loop
from i2am.sampling.sampler import Sampler, sample_seed


def make_live(adapter):
    """Make the ControlNet's zero convs non-zero: freshly built, the ControlNet residuals (the PACA keys and values)
    are all 0, so the output cannot depend on which of them a query reads."""
    torch.manual_seed(0)
    with torch.no_grad():
        controlnet = adapter.controlnet
        for conv in [controlnet.controlnet_cond_embedding.conv_out, *controlnet.controlnet_down_blocks,
                     controlnet.controlnet_mid_block]:
            conv.weight.normal_(0, 0.3)
    return adapter


@pytest.fixture(scope="module")
def pasd():
    return make_live(create_model("pasd-tiny").eval())


def batch(n=1):
    lr = torch.rand(n, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    return {"lr": lr, "sample_id": [f"p{i}" for i in range(n)]}


class ConditionalEmptyReference:
    """A PACA attention whose conditional half reads an empty reference (zero key tokens): its output is the output
    projection's bias alone; the unconditional half runs unchanged."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        half = out.shape[0] // 2                                  # PASD's CFG batch is [uncond, cond]
        assert not attn.residual_connection and attn.rescale_output_factor == 1.0
        empty = attn.to_out[0].bias.expand_as(out[half:])
        return torch.cat([out[:half], empty])


def empty_reference_latents(pasd, inputs, sampler):
    layers = pasd.attribution_layers()
    originals = [spec.module.processor for spec in layers]
    for spec in layers:
        spec.module.set_processor(ConditionalEmptyReference(spec.module.processor))
    try:
        return pasd.run_loop(inputs, sampler)
    finally:
        for spec, processor in zip(layers, originals):
            spec.module.set_processor(processor)


def pasd_loop_by_hand(pasd, sample, steps):
    """PASD's sampling written out: UniPC, the twice-noised LR latent as the start, guidance 9, colour fix."""
    inputs = pasd.prepare(sample)
    scheduler = pasd.make_scheduler("unipc")
    scheduler.set_timesteps(steps)
    generators = [torch.Generator().manual_seed(sample_seed(0, sid)) for sid in sample["sample_id"]]
    z_lr = pasd.lr_latents(sample["lr"], generators)
    noise = torch.stack([torch.randn(4, 16, 16, generator=g) for g in generators])
    added = torch.stack([torch.randn(4, 16, 16, generator=g) for g in generators])
    x = start_latents(scheduler, z_lr, noise, added, pasd.added_noise_level)
    for t in scheduler.timesteps:
        eps = pasd.denoise(scheduler.scale_model_input(x, t), t, inputs, guidance=9.0)
        x = scheduler.step(eps, t, x).prev_sample
    return pasd.decode_latents(x, sample["lr"]), x


@torch.no_grad()
def test_sample_is_run_loop_and_rows_of_one_sample_get_its_own_noise(pasd):
    sample, sampler = batch(2), Sampler(num_steps=2)
    out = pasd.sample(sample, sampler=sampler)
    images, latents = pasd_loop_by_hand(pasd, sample, 2)
    assert torch.equal(out["latents"], latents) and torch.equal(out["images"], images)
    assert pasd.own_loop
    require_sampler_loop(pasd, sampler, "test")   # PASD passes: its run_loop is its own loop
    single = pasd.prepare({"lr": sample["lr"][1:], "sample_id": ["p1"]})
    alone = pasd.run_loop(single, sampler)
    repeated = pasd.run_loop(repeat_inputs(single, 3), sampler)   # how the checks batch their re-runs
    # the same noise in every row, up to float differences of batched convolutions (amplified by guidance 9)
    for row in repeated:
        torch.testing.assert_close(row, alone[0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(alone[0], out["latents"][1], atol=1e-3, rtol=1e-3)   # whatever the batch
    assert (out["latents"][0] - out["latents"][1]).abs().max() > 0.1   # another sample: other noise, other LR


@torch.no_grad()
def test_knockout_on_the_paca_layers(pasd):
    sampler = Sampler(num_steps=2)
    inputs = pasd.prepare(batch())
    plain = pasd.run_loop(inputs, sampler)
    scores = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    with TokenKnockout(pasd) as knockout:
        assert len(knockout.layers) == 12
        none = pasd.run_loop(inputs, sampler)
        knockout.delete(scores, 0.5)
        half = pasd.run_loop(inputs, sampler)
        knockout.delete(scores, 1.0)
        removed = pasd.run_loop(inputs, sampler)
    assert torch.equal(none, plain)                     # knockout of no token is bit-identical
    assert (half - plain).abs().max() > 0.1             # the PACA keys matter (latents reach ~60 here)
    empty = empty_reference_latents(pasd, inputs, sampler)
    torch.testing.assert_close(removed, empty, atol=1e-4, rtol=1e-5)   # knockout of all = an empty reference


def test_g2r_curves_full_and_proxy_on_pasd(pasd):
    sampler, sample = Sampler(num_steps=2), batch()
    scores = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(1))
    result = g2r_curves(pasd, sampler, sample, scores, sample_id="p0", fractions=[0.0, 0.5, 1.0], random_orders=2,
                        modes=("full", "proxy"), proxy_steps=(0.5,))
    assert result["orders"] == ["attribution", "inverse", "random0", "random1", "centre", "blobs"]   # no mask: no
    assert result["removal"] == "knockout"                   # foreground order; PASD's null is a prompt: knockout
    for mode in ("full", "proxy"):
        for space in ("latent", "pixel"):
            curves = result["curves"][mode][space]
            assert curves["all_removed"] > 0 and math.isfinite(curves["all_removed"])
            for name in ("deletion", "insertion"):
                for order, curve in curves[name].items():
                    assert len(curve) == 3 and all(math.isfinite(v) for v in curve), (mode, space, name, order)
                    assert curve[0 if name == "deletion" else -1] == 0.0
    # 2 steps of the baseline run, then 1 (all removed) + 6 orders x 2 curves x 1 fraction = 13 perturbed runs in
    # batches of 8 (2 chunks x 2 steps); CFG doubles the rows
    assert result["cost"]["full"] == {"unet_calls": 2 + 2 * 2, "unet_rows": (1 + 13) * 2 * 2}
    summary = summarise_g2r(result)
    assert all(math.isfinite(summary[f"faith_{m}_pixel_del_{s}"]) for m in ("full", "proxy") for s in ("auc", "gap"))


@torch.no_grad()
def test_the_proxy_recomputes_pasds_own_x0_prediction(pasd):
    """The proxy re-predicts x0 from the trajectory's (x, t, alpha_cumprod) with ``denoise``: for PASD that is the
    x0 prediction its own loop made at that step (UniPC's model input is x itself)."""
    inputs, points = pasd.prepare(batch()), []
    pasd.run_loop(inputs, Sampler(num_steps=2), callback=points.append)
    for point in points:
        eps = pasd.denoise(point["x"], torch.tensor(point["t"]), inputs, guidance=9.0)
        a = point["alpha_cumprod"]
        torch.testing.assert_close((point["x"] - (1 - a).sqrt() * eps) / a.sqrt(), point["denoised"])


def test_the_null_counterfactual_is_every_paca_token_knocked_out(pasd):
    sampler, sample = Sampler(num_steps=2), batch()
    r2g = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(2))
    result = r2g_counterfactuals(pasd, sampler, sample, r2g, variants=("null",))
    inputs = pasd.prepare(sample)
    with torch.no_grad():
        baseline = (pasd.decode_latents(pasd.run_loop(inputs, sampler)) + 1) / 2
        empty = (pasd.decode_latents(empty_reference_latents(pasd, inputs, sampler)) + 1) / 2
    expected = cell_change(empty, baseline, (16, 16))[0].double()
    torch.testing.assert_close(result["maps"]["null"], expected, atol=1e-5, rtol=0)
    assert result["r2g_cf_null_change"] > 0 and math.isfinite(result["r2g_cf_null_spearman"])


def test_a_foreign_start_code_without_a_loop_of_its_own_is_refused(tmp_path):
    adapter = RoutingAdapter(list(range(16)), num_steps=2).eval()
    adapter.sampler_defaults["start_code"] = "foreign"
    sampler, sample, scores = Sampler(num_steps=2), routing_sample(), torch.rand(1, 4, 4)
    reason = "start_code='foreign'.*own_loop = False"
    with pytest.raises(ValueError, match=reason):
        g2r_curves(adapter, sampler, sample, scores, sample_id="route0")
    with pytest.raises(ValueError, match=reason):
        r2g_counterfactuals(adapter, sampler, sample, scores, variants=("null",))
    with pytest.raises(ValueError, match=reason):
        randomization_curves(adapter, sampler, sample, CaptureConfig(num_steps=2, time_groups=1))
    ctx = SampleContext(sample_id="route0", sample=sample, maps=None, rendered={}, generated=torch.zeros(1, 3, 4, 4),
                        adapter=adapter, sampler=sampler, sample_dir=tmp_path / "route0")
    with pytest.raises(ValueError, match=reason):
        FaithfulnessEvaluator(samples=1).update(ctx)
    adapter.own_loop = True   # a loop of its own behind run_loop: let through
    require_sampler_loop(adapter, sampler, "test")


CHEAP = ["evaluator_set=none", "+evaluator@evaluators.faithfulness=faithfulness",
         "+evaluator@evaluators.randomization=randomization", "evaluators.faithfulness.fractions=[0.0,0.5,1.0]",
         "evaluators.faithfulness.random_orders=1", "evaluators.faithfulness.modes=[full]",
         "evaluators.faithfulness.n_bootstrap=50", "evaluators.faithfulness.figures=false",
         "evaluators.faithfulness.samples=1", "evaluators.randomization.samples=1",
         "evaluators.randomization.modes=[cascading]", "evaluators.randomization.max_stages=1",
         "evaluators.randomization.figures=false", "sampler.num_steps=1", "capture.time_groups=1"]


def live_checkpoint(path):
    adapter = make_live(create_model("pasd-tiny"))
    state = {f"{folder}/{key}": value for folder in ("unet", "controlnet")
             for key, value in getattr(adapter, folder).state_dict().items()}
    torch.save(state, path)
    return path


def test_evaluators_run_inside_attribute_for_pasd_and_resume(tmp_path):
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=pasd-tiny",
                 f"model.checkpoint={live_checkpoint(tmp_path / 'pasd.pt')}", "data=sr_toy", "data.toy_count=2",
                 "trainer.enable_progress_bar=false", *CHEAP]
    reference = run_task("attribute", overrides)
    run = tmp_path / "run"
    for key in ("faith_full_pixel_del_gap", "faith_full_latent_ins_auc", "r2g_cf_null_spearman", "r2g_cf_swap_change",
                "rand_r2g_spearman_cascade_first", "rand_g2r_ssim_noise"):
        assert math.isfinite(reference[key]), key
    ids = sorted(p.name[:-len(".json")] for p in (run / "metrics").glob("*.json"))
    evaluated = [p.parent.name for p in (run / "per_sample").glob("*/faithfulness.json")]
    assert len(ids) == 2 and len(evaluated) == 1
    record = json.loads((run / "per_sample" / evaluated[0] / "faithfulness.json").read_text())
    assert record["r2g_counterfactual"]["donor_id"] in set(ids) - set(evaluated)   # the other sample's LR image
    # what a kill can leave: the evaluated sample's curves written but not its done marker, the other not started
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    (killed / "metrics.json").unlink()
    for sample_id in ids:
        for suffix in (".json", ".states.pt"):
            (killed / "metrics" / f"{sample_id}{suffix}").unlink()
    other = (set(ids) - set(evaluated)).pop()
    shutil.rmtree(killed / "per_sample" / other, ignore_errors=True)
    (killed / "per_sample" / evaluated[0] / "randomization.json").unlink()
    resumed = run_task("attribute", [*overrides, f"run_dir={killed}"])
    assert resumed == pytest.approx(reference, rel=1e-9, nan_ok=True)
    def numbers(metrics):   # metrics.json holds NaN as null
        return {k: float("nan") if v is None else v for k, v in metrics.items()}
    assert numbers(read_metrics(killed)) == pytest.approx(numbers(read_metrics(run)), rel=1e-9, nan_ok=True)
    assert [p.parent.name for p in (killed / "per_sample").glob("*/faithfulness.json")] == evaluated


def test_pasd_randomisation_stages_end_with_the_controlnet_that_makes_the_paca_keys(pasd):
    from i2am.evaluation.randomization import adapter_stages, randomized, stage_tensors

    stages = adapter_stages(pasd)
    names = [name for name, _ in stages]
    assert names[0] == "out" and names[-1] == "controlnet" and "up_blocks.0" in names
    assert stages[-1][1] == [pasd.controlnet]
    snapshot = lambda module: {k: v.clone() for k, v in module.state_dict().items()}
    unet, controlnet = snapshot(pasd.unet), snapshot(pasd.controlnet)
    with randomized(stages[-1:], seed=0):
        assert all(torch.equal(v, pasd.unet.state_dict()[k]) for k, v in unet.items())           # UNet untouched
        changed = [k for k, v in controlnet.items() if not torch.equal(v, pasd.controlnet.state_dict()[k])]
        assert changed and len(stage_tensors([pasd.controlnet])) >= len(changed)
    assert all(torch.equal(v, pasd.controlnet.state_dict()[k]) for k, v in controlnet.items())     # restored
