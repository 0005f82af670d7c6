"""Deletion against trivial orders, judged by paired statistics over samples: a model that ignores the reference
gives no claim; a routing model with a known answer beats the best trivial order; on a garment-on-white reference a
trivial order beats random order whatever the map says (why the trivial baselines are needed)."""
import torch
from helpers.faithfulness_models import CELLS, GRID, RoutingAdapter, routing_sample

from i2am.evaluation.faithfulness import g2r_curves, summarise_g2r
from i2am.evaluation.faithfulness_evaluator import faithfulness_keys, summarise_rows
from i2am.measures.trivial_orders import TRIVIAL_ORDERS, blob_order, centre_prior, foreground_order
from i2am.report.faithfulness_claims import faithfulness_claims
from i2am.sampling.sampler import Sampler

FRACTIONS = [0.0, 0.25, 0.5, 1.0]
N_SAMPLES = 16
GARMENT = [5, 6, 9, 10]                                  # the 2x2 centre of the 4x4 reference grid: the "garment"


def garment_mask() -> torch.Tensor:
    mask = torch.zeros(1, 1, *GRID)
    mask.view(-1)[GARMENT] = 1.0
    return mask


def dataset_metrics(adapter, scores_of, foreground=None, random_orders=3):
    """The evaluator's dataset numbers over N_SAMPLES samples: per-sample curves, then the paired statistics."""
    sampler = Sampler(num_steps=2)
    keys = faithfulness_keys(["full"], counterfactual=False)
    rows = []
    for seed in range(N_SAMPLES):
        result = g2r_curves(adapter, sampler, routing_sample(seed), scores_of(seed), sample_id=f"s{seed}",
                            fractions=FRACTIONS, random_orders=random_orders, batch_size=64, foreground=foreground)
        values = summarise_g2r(result)
        rows.append([values.get(k, float("nan")) for k in keys])
        curves = result["curves"]["full"]["pixel"]
    return summarise_rows(keys, torch.tensor(rows, dtype=torch.float64), 500, 0.95, 0, "faith"), curves


def routing_map(seed: int, read) -> torch.Tensor:
    """The map a faithful attribution of the routing model gives: the read tokens high, small noise elsewhere."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(1, *GRID, generator=g) * 0.1
    scores.view(-1)[list(read)] += 1.0
    return scores


def test_a_model_that_ignores_the_reference_is_flat_in_every_order_and_holds_no_claim():
    adapter = RoutingAdapter([0] * CELLS, ignore_reference=True).eval()
    metrics, curves = dataset_metrics(adapter, lambda s: routing_map(s, [0]), foreground=garment_mask())
    assert curves["all_removed"] == 0.0
    for name in ("deletion", "insertion"):
        assert set(curves[name]) >= {"attribution", "inverse", *TRIVIAL_ORDERS}
        assert all(v == 0.0 for values in curves[name].values() for v in values)
    claims = faithfulness_claims({"control": metrics}, {"alpha": 0.01})
    assert claims and not any(c.held for c in claims)


def test_the_routing_map_beats_the_best_trivial_order_over_16_samples():
    read = [0, 3, 12, 15]                                # the corners: neither the garment, nor the centre
    adapter = RoutingAdapter([read[j % 4] for j in range(CELLS)]).eval()
    metrics, _ = dataset_metrics(adapter, lambda s: routing_map(s, read), foreground=garment_mask())
    key = "faith_full_pixel_del_gap_trivial"
    assert metrics[f"{key}_n"] == N_SAMPLES and metrics[f"{key}_p"] < 0.01 and metrics[key] > 0
    assert metrics[f"{key}_lo"] > 0                      # 16 samples: an interval over samples is reported
    claims = faithfulness_claims({"control": metrics}, {"alpha": 0.01})
    assert claims[0].held is True, claims[0]


def test_a_trivial_order_beats_random_on_a_garment_reference_with_a_map_blind_model():
    """The model reads only garment tokens; its map knows nothing (random). The foreground order alone beats
    random order, so "beats random" says nothing about a map; against the best trivial order the blind map fails."""
    adapter = RoutingAdapter([GARMENT[j % 4] for j in range(CELLS)]).eval()

    def blind(seed):
        return torch.rand(1, *GRID, generator=torch.Generator().manual_seed(1000 + seed))
    metrics, _ = dataset_metrics(adapter, blind, foreground=garment_mask())
    p = "faith_full_pixel_del"
    assert metrics[f"{p}_auc_foreground"] < metrics[f"{p}_auc_random"] - 0.1
    assert TRIVIAL_ORDERS[int(metrics[f"{p}_best_trivial"])] in ("foreground", "centre")   # the garment is central
    assert metrics[f"{p}_gap_trivial"] < 0 and metrics[f"{p}_gap_trivial_p"] > 0.5
    assert faithfulness_claims({"custom": metrics})[0].held is False


def test_trivial_orders_come_from_the_inputs_alone():
    g = torch.Generator().manual_seed(0)
    fg = foreground_order(garment_mask(), GRID, g)
    assert set(torch.argsort(-fg.flatten())[:4].tolist()) == set(GARMENT)
    ties = [foreground_order(garment_mask(), GRID, torch.Generator().manual_seed(s)).flatten().argmax().item()
            for s in range(8)]
    assert len(set(ties)) > 1                             # ties broken at random, not in raster order
    centre = centre_prior(GRID, g)
    assert set(torch.argsort(-centre.flatten())[:4].tolist()) == set(GARMENT)
    blobs = blob_order(GRID, g)
    assert blobs.shape == (1, *GRID) and blobs.std() > 0
