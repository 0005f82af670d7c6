"""Token knockout, deletion / insertion curves on a model whose answer is known, R2G counterfactuals, curve maths."""
import math

import pytest
import torch
from helpers.faithfulness_models import (
    CELLS,
    BareUNetAdapter,
    RoutingAdapter,
    bare_sample,
    bare_unet,
    routing_sample,
)
from helpers.paths import REPO

from i2am.engine import AttributionCapture, CaptureConfig
from i2am.engine.knockout import TokenKnockout, rank_keep_mask
from i2am.evaluation.faithfulness import cell_change, g2r_curves, pick_donor, r2g_counterfactuals, summarise_g2r
from i2am.measures.curves import normalised_auc, retained, topk_overlap
from i2am.runs import RunDir
from i2am.sampling.sampler import Sampler

READ = [0, 1, 4, 5]                                   # the reference cells the routing model reads
ROUTE = [READ[j % 4] for j in range(CELLS)]           # each query cell reads exactly one of them
FRACTIONS = [0.0, 0.125, 0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def unet():
    return bare_unet()


def unet_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 48, 16, generator=g)


# ---------------------------------------------------------------- knockout
def test_knockout_of_no_token_is_bit_identical_and_of_all_tokens_equals_an_empty_reference(unet):
    x, ctx = unet_inputs()
    scores = torch.rand(2, 8, 6)
    with torch.no_grad():
        plain = unet(x, 500, ctx).sample
        empty = unet(x, 500, ctx[:, :0]).sample                 # zero reference tokens: the model's own kernel
        with TokenKnockout(unet, ref_grid=(8, 6)) as knockout:
            knockout.delete(scores, 0.0)
            none_removed = unet(x, 500, ctx).sample
            knockout.insert(scores, 1.0)
            all_kept = unet(x, 500, ctx).sample
            knockout.delete(scores, 1.0)
            all_removed = unet(x, 500, ctx).sample
            knockout.delete(scores, 0.5)
            half_removed = unet(x, 500, ctx).sample
        after = unet(x, 500, ctx).sample
    assert torch.equal(none_removed, plain) and torch.equal(all_kept, plain)
    torch.testing.assert_close(all_removed, empty, rtol=0, atol=1e-6)
    assert (half_removed - plain).abs().max() > 1e-3
    assert torch.equal(after, plain)                              # processors restored on exit


def test_knockout_equals_dropping_those_tokens_from_the_reference(unet):
    """Removing tokens by -inf logits = running the model on the shorter reference without them."""
    x, ctx = unet_inputs(1)
    scores = torch.rand(1, 8, 6)
    keep = rank_keep_mask(scores, (8, 6), 0.25, keep_top=False)[0]
    with torch.no_grad():
        shorter = unet(x[:1], 300, ctx[:1, keep]).sample
        with TokenKnockout(unet, ref_grid=(8, 6)) as knockout:
            knockout.delete(scores, 0.25)
            knocked = unet(x[:1], 300, ctx[:1]).sample
    torch.testing.assert_close(knocked, shorter, rtol=1e-4, atol=1e-5)


def test_replacement_of_all_tokens_equals_the_run_with_the_replacement_context(unet):
    x, ctx = unet_inputs(2)
    uncond = torch.randn(1, 48, 16)
    with torch.no_grad():
        expected = unet(x, 400, uncond.expand(2, -1, -1)).sample
        with TokenKnockout(unet, ref_grid=(8, 6), mode="replace", replacement=uncond) as knockout:
            knockout.delete(torch.rand(2, 8, 6), 1.0)
            replaced = unet(x, 400, ctx).sample
    torch.testing.assert_close(replaced, expected, rtol=1e-5, atol=1e-6)


def test_rank_mask_is_resized_to_each_layer_grid():
    scores = torch.zeros(1, 8, 6)
    scores[0, :4, :3] = 1.0                                        # the top-left quarter matters
    on_coarse = rank_keep_mask(scores, (4, 3), 0.25, keep_top=True)[0].reshape(4, 3)
    assert int(on_coarse.sum()) == 3 and bool(on_coarse[:2, :2].any())
    assert int((~rank_keep_mask(scores, (8, 6), 0.5, keep_top=False)).sum()) == 24
    with pytest.raises(ValueError, match="fraction"):
        rank_keep_mask(scores, (8, 6), 1.5, keep_top=False)


def test_knockout_needs_spatial_reference_layers(unet):
    with pytest.raises(ValueError, match="ref_grid"):
        TokenKnockout(unet)                                        # one token per layer as far as it knows


# ---------------------------------------------------------------- deletion / insertion on a known answer
def routing_curves(ignore_reference=False):
    adapter = RoutingAdapter(ROUTE, ignore_reference=ignore_reference).eval()
    sampler = Sampler(num_steps=4)
    sample = routing_sample()
    with AttributionCapture(adapter, CaptureConfig(num_steps=4, time_groups=1)) as cap:
        adapter.sample(sample, sampler=sampler)
    g2r = cap.maps().g2r.ulam
    result = g2r_curves(adapter, sampler, sample, g2r, sample_id="route0", fractions=FRACTIONS, random_orders=4,
                        modes=("full", "proxy"), proxy_steps=(0.5,), batch_size=16)
    return g2r, result


def test_g2r_map_of_the_routing_model_points_at_the_tokens_it_reads():
    g2r, _ = routing_curves()
    top = set(torch.argsort(-g2r.flatten(), stable=True)[:4].tolist())
    assert top == set(READ)


def test_deletion_by_attribution_drops_far_faster_than_random_and_inverse_slower():
    _, result = routing_curves()
    values = summarise_g2r(result)
    for mode in ("full", "proxy"):
        for space in ("latent", "pixel"):
            p = f"faith_{mode}_{space}"
            assert values[f"{p}_del_auc"] < values[f"{p}_del_auc_random"] - 0.2, (p, values)
            assert values[f"{p}_del_auc_inverse"] > values[f"{p}_del_auc_random"] + 0.1, (p, values)
            assert values[f"{p}_del_gap_centre"] > 0            # three of the four read tokens lie off-centre
            assert values[f"{p}_ins_auc"] > values[f"{p}_ins_auc_random"] + 0.1, (p, values)
            assert values[f"{p}_ins_auc_inverse"] < values[f"{p}_ins_auc_random"], (p, values)
    deletion = result["curves"]["full"]["latent"]["deletion"]
    full = result["curves"]["full"]["latent"]["all_removed"]
    assert 1 - deletion["attribution"][2] / full < 0.1       # 25 %: every read token is gone, nothing is retained
    assert deletion["inverse"][3] == pytest.approx(0.0, abs=1e-8)         # 50 % of unread tokens: no change


def test_a_model_that_ignores_the_reference_has_flat_curves():
    _, result = routing_curves(ignore_reference=True)
    for mode in ("full", "proxy"):
        for curves in result["curves"][mode].values():
            assert curves["all_removed"] == pytest.approx(0.0, abs=1e-10)
            for name in ("deletion", "insertion"):
                for values in curves[name].values():
                    assert max(abs(v) for v in values) < 1e-10
    values = summarise_g2r(result)
    assert math.isnan(values["faith_full_latent_del_auc"])           # nothing to attribute: no normalised curve


def test_cost_is_counted_in_unet_calls():
    _, result = routing_curves()
    orders = 2 + 4 + 2                                               # map, inverse, 4 random, centre and blobs
    rows = 1 + 1 + orders * 2 * (len(FRACTIONS) - 2)                # baseline, all removed, interior points
    assert result["cost"]["full"]["unet_rows"] == 4 * rows
    assert result["cost"]["proxy"]["unet_rows"] == 4 + (rows - 1)   # baseline run + one x0 step per perturbation


# ---------------------------------------------------------------- R2G counterfactuals on a bare UNet
def test_r2g_counterfactuals_on_a_bare_unet():
    adapter = BareUNetAdapter().eval()
    sampler = Sampler(num_steps=3)
    sample = bare_sample()
    with AttributionCapture(adapter, CaptureConfig(num_steps=3, time_groups=1)) as cap:
        adapter.sample(sample, sampler=sampler)
    r2g = cap.maps().r2g.ulam
    region = torch.zeros(1, 1, 8, 8)
    region[..., 2:6, 1:7] = 1
    variants = ("swap", "rotated", "null")
    out = r2g_counterfactuals(adapter, sampler, sample, r2g, donor=bare_sample(1), variants=variants, region=region,
                              reference_keys=("tokens",))
    assert out["r2g_cf_topk_baseline"] == pytest.approx(math.ceil(0.2 * 24) / 24)
    for name in variants:
        assert out[f"r2g_cf_{name}_change"] > 0
        assert -1 <= out[f"r2g_cf_{name}_spearman"] <= 1
        assert out["maps"][name].shape == (8, 8)
    # the swap is the run with the donor's reference, the same noise
    donor_run = adapter.sample({**sample, "tokens": bare_sample(1)["tokens"]}, sampler=sampler)["images"]
    base_run = adapter.sample(sample, sampler=sampler)["images"]
    expected = cell_change((donor_run + 1) / 2, (base_run + 1) / 2, (8, 8))[0].double()
    torch.testing.assert_close(out["maps"]["swap"], expected)
    # the same noise: the unchanged reference gives no change
    same = r2g_counterfactuals(adapter, sampler, sample, r2g, donor=sample, region=region, reference_keys=("tokens",))
    assert same["r2g_cf_swap_change"] == 0.0
    with pytest.raises(ValueError, match="needs a donor"):
        r2g_counterfactuals(adapter, sampler, sample, r2g, reference_keys=("tokens",))
    with pytest.raises(ValueError, match="reference_keys"):
        r2g_counterfactuals(adapter, sampler, sample, r2g, donor=bare_sample(1), reference_keys=("reference",))


def test_the_swap_donor_is_another_sample_drawn_by_seed():
    dataset = [{"sample_id": f"s{i}", "reference": torch.full((3, 2, 2), float(i % 3))} for i in range(6)]
    sample = {"sample_id": ["s0"], "reference": dataset[0]["reference"][None]}
    donors = {seed: pick_donor(dataset, sample, "s0", ["reference"], seed)[1] for seed in range(8)}
    assert "s0" not in donors.values() and "s3" not in donors.values()   # s3 carries s0's reference
    assert len(set(donors.values())) > 1                                   # the seed draws the donor
    assert donors == {seed: pick_donor(list(dataset), sample, "s0", ["reference"], seed)[1] for seed in range(8)}
    with pytest.raises(ValueError, match="no other sample"):
        pick_donor(dataset[:1], sample, "s0", ["reference"])


# ---------------------------------------------------------------- maths
def test_curve_maths():
    assert float(normalised_auc([0, 0.5, 1], torch.tensor([1.0, 1.0, 1.0]))) == pytest.approx(1.0)
    assert float(normalised_auc([0, 0.5, 1], torch.tensor([1.0, 0.0, 0.0]))) == pytest.approx(0.25)
    kept = retained(torch.tensor([0.0, 2.0, 4.0]), torch.tensor(4.0))
    assert kept.tolist() == [1.0, 0.5, 0.0]
    assert torch.isnan(retained(torch.tensor([0.0, 0.0]), torch.tensor(0.0))).all()
    assert topk_overlap(torch.arange(10.0), torch.arange(10.0), 0.2) == 1.0
    assert topk_overlap(torch.arange(10.0), -torch.arange(10.0), 0.2) == 0.0


# ---------------------------------------------------------------- claims and report panels
def test_claims_follow_their_fixed_rules():
    from i2am.measures.stats import flat, paired
    from i2am.report.faithfulness_claims import faithfulness_claims

    key = "faith_full_pixel_del_gap_trivial"
    wins, loses = paired([0.3] * 12, [0.0] * 12), paired([-0.1, 0.2, -0.3] * 4)
    few = paired([0.3, 0.2, 0.4])
    cf = flat("r2g_cf_swap_spearman_vs_mask", wins)
    good = {**flat(key, wins), **flat("rand_r2g_margin", wins), **flat("rand_g2r_margin", wins),
            "r2g_cf_swap_spearman": 0.4, "r2g_cf_swap_topk": 0.5, "r2g_cf_topk_baseline": 0.2, **cf}
    bad = {**good, **flat(key, loses), **flat("rand_g2r_margin", loses)}
    verdicts = {c.claim: (c.held, c.outcome) for c in faithfulness_claims({"control": good, "custom": bad})}
    assert verdicts == {
        "The positive control's G2R map is faithful: deleting its top reference tokens changes the output sooner "
        "than the best order computed from the inputs alone": (True, ""),
        "The MSE-only model's G2R map beats the best trivial order in deletion": (False, ""),
        "custom: the maps fail to survive model-parameter randomisation (sanity check)": (False, ""),
        "control: the maps fail to survive model-parameter randomisation (sanity check)": (True, ""),
        "control: the R2G map shows where the output changes when the reference is swapped": (True, "")}
    small = faithfulness_claims({"control": {**good, **flat(key, few), **flat("rand_r2g_margin", few)}})
    assert [(c.held, c.outcome) for c in small[:2]] == [(None, "insufficient n")] * 2
    assert "no interval (n < 10)" in small[0].measured and "p = 0.125" in small[0].measured
    assert faithfulness_claims({"control": {}}) == []
    with pytest.raises(ValueError, match="demo.claims.baseline"):
        faithfulness_claims({"control": good}, {"baseline": "oracle"})


def test_report_panels_average_the_evaluator_files(tmp_path):
    from i2am.evaluation.evaluator import SampleContext
    from i2am.evaluation.faithfulness_evaluator import FaithfulnessEvaluator
    from i2am.viz.faithfulness_panels import faithfulness_panels, mean_curves

    adapter, sampler = RoutingAdapter(ROUTE).eval(), Sampler(num_steps=2)
    evaluator = FaithfulnessEvaluator(samples=2, fractions=FRACTIONS, random_orders=2, modes=["full"],
                                      counterfactual=False, region_key=None, n_bootstrap=100)
    for seed in (0, 1):
        sample = routing_sample(seed)
        with AttributionCapture(adapter, CaptureConfig(num_steps=2, time_groups=1)) as cap:
            adapter.sample(sample, sampler=sampler)
        evaluator.update(SampleContext(sample_id=f"s{seed}", sample=sample, maps=cap.maps(), rendered={},
                                       generated=torch.zeros(1, 3, 4, 4), adapter=adapter, sampler=sampler,
                                       sample_dir=RunDir(tmp_path / "run").sample_dir(f"s{seed}")))
    summary = evaluator.compute()
    assert summary["faith_n_samples"] == 2
    assert summary["faith_full_pixel_del_gap_n"] == 2 and math.isnan(summary["faith_full_pixel_del_gap_lo"])
    assert summary["faith_full_pixel_del_gap"] > 0
    import json
    records = [json.loads(p.read_text()) for p in RunDir(tmp_path / "run").sample_files("faithfulness.json")]
    fractions, curves = mean_curves(records)
    assert fractions == FRACTIONS and curves["full"]["pixel"]["deletion"]["attribution"][0] == pytest.approx(0.0)
    panels = faithfulness_panels(tmp_path / "run", tmp_path / "panels", "routing")
    assert len(panels) == 1 and panels[0][1].is_file()


def test_configs_instantiate_and_the_checks_import_no_model_family_nor_lightning():
    import subprocess
    import sys

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from i2am.evaluation.faithfulness_evaluator import FaithfulnessEvaluator
    from i2am.evaluation.randomization_evaluator import RandomizationEvaluator

    conf = REPO / "conf" / "evaluator"
    faith = instantiate(OmegaConf.load(conf / "faithfulness.yaml"))
    assert isinstance(faith, FaithfulnessEvaluator) and faith.fractions[0] == 0.0 and faith.random_orders == 10
    assert isinstance(instantiate(OmegaConf.load(conf / "randomization.yaml")), RandomizationEvaluator)
    code = ("import sys, i2am.engine.knockout, i2am.evaluation.faithfulness_evaluator, "
            "i2am.evaluation.randomization_evaluator, i2am.viz.faithfulness; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning') "
            "or m.startswith(('i2am.adapters.', 'i2am.training', 'i2am.report', 'i2am.app')) "
            "and m not in ('i2am.adapters._anatomy', 'i2am.adapters._registry')]; "
            "assert not bad, bad")   # the UNet anatomy only: no model family, no Lightning, nothing above
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
