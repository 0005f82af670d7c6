"""Attention losses of the custom model (docs/method.md §6.3-§6.4), guards and the toy correspondence control."""

import math

import pytest
import torch

from i2am.losses import (
    attention_centroids,
    attention_diagnostics,
    attention_losses,
    correspondence_ce_loss,
    correspondence_targets,
    cwg_is_active,
    cwg_loss,
    dcml_loss,
    entropy_floor_loss,
    head_average,
    query_mask,
    raster_pair_masks,
    tv_loss,
)

GRID = (2, 2)  # query grid: queries 0 1 / 2 3
REF = (3, 3)  # reference grid


def hand_attention(dtype=torch.float64) -> torch.Tensor:
    """Four queries on the 3x3 reference grid, [1, 4, 3, 3]:
    q0 one-hot at (0,0)            -> centroid (0, 0)
    q1 1/2 at (0,0), 1/2 at (0,2)  -> centroid (0, 1)
    q2 1/2 at (2,0), 1/2 at (2,2)  -> centroid (2, 1)
    q3 uniform 1/9                 -> centroid (1, 1)
    """
    a = torch.zeros(1, 4, 3, 3, dtype=dtype)
    a[0, 0, 0, 0] = 1.0
    a[0, 1, 0, 0] = a[0, 1, 0, 2] = 0.5
    a[0, 2, 2, 0] = a[0, 2, 2, 2] = 0.5
    a[0, 3] = 1.0 / 9.0
    return a


HAND_CENTROIDS = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
MASK_3_OUT = torch.tensor([[True, True, True, False]])  # query 3 outside the garment
MASK_ALL = torch.ones(1, 4, dtype=torch.bool)


def random_attention(b=2, lq=4, ref=REF, seed=0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, lq, ref[0] * ref[1], generator=g, dtype=dtype)
    return logits.softmax(-1).reshape(b, lq, *ref)


# ---------------------------------------------------------------- shared quantities


def test_centroids_hand_example():
    torch.testing.assert_close(attention_centroids(hand_attention()), HAND_CENTROIDS)


def test_centroids_match_naive_weighted_sum():
    attn = random_attention(b=2, lq=5, ref=(4, 3))
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(3.0), indexing="ij")
    naive = torch.stack([(attn * ys.double()).sum((-2, -1)), (attn * xs.double()).sum((-2, -1))], dim=-1)
    torch.testing.assert_close(attention_centroids(attn), naive)


def test_query_mask_is_nearest_then_threshold():
    # legacy "nearest" 4x4 -> 2x2 samples source pixels (0,0), (0,2), (2,0), (2,2); threshold >= 0.5
    m = torch.ones(1, 1, 4, 4)
    m[0, 0, 0, 0] = 0.5  # kept (>= 0.5)
    m[0, 0, 0, 2] = 0.49  # dropped although its neighbours are 1 (no averaging)
    m[0, 0, 2, 0] = 0.0
    m[0, 0, 3, 3] = 0.0  # not sampled: (2,2) stays 1
    assert query_mask(m, (2, 2)).tolist() == [[True, False, False, True]]


def test_head_average():
    probs = torch.zeros(1, 2, 1, 4)
    probs[0, 0, 0, 0] = 1.0  # head 0 on cell 0
    probs[0, 1, 0, 3] = 1.0  # head 1 on cell 3 = (1, 1)
    expected = torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]])
    torch.testing.assert_close(head_average(probs, (2, 2)), expected)
    with pytest.raises(ValueError, match="ref_grid"):
        head_average(probs, (3, 3))


# ---------------------------------------------------------------- CWG


def test_cwg_hand_example():
    # per query sum_{y,x} w A m:  q0: w=1 at its centroid -> 1
    # q1: cells (0,0),(0,2) at distance 1 from (0,1), w = exp(-1/2) -> 2 * 0.5 * e^-0.5 = e^-0.5;  q2 likewise
    # q3 masked out -> 0.  mean over B*Lq*hr*wr = 36 elements;  L = -2 * (1 + 2 e^-0.5) / 36
    expected = -2.0 * (1 + 2 * math.exp(-0.5)) / 36
    assert cwg_loss(hand_attention(), MASK_3_OUT).item() == pytest.approx(expected, rel=1e-12)
    # sigma = 2: exp(-d / 8)
    expected_sigma2 = -2.0 * (1 + 2 * math.exp(-1 / 8)) / 36
    assert cwg_loss(hand_attention(), MASK_3_OUT, sigma=2.0).item() == pytest.approx(expected_sigma2, rel=1e-12)


def test_cwg_uses_euclidean_distance_not_its_square():
    # q3 uniform around (1,1): centre d=0, 4 edge cells d=1, 4 corners d=sqrt(2) -> (1 + 4e^-0.5 + 4e^(-sqrt2/2)) / 9
    # (a squared distance would give e^-1 at the corners)
    q3 = (1 + 4 * math.exp(-0.5) + 4 * math.exp(-math.sqrt(2) / 2)) / 9
    expected = -(1 + 2 * math.exp(-0.5) + q3) / 36  # weight 1
    assert cwg_loss(hand_attention(), MASK_ALL, weight=1.0).item() == pytest.approx(expected, rel=1e-12)


def test_cwg_matches_naive_loop():
    attn = random_attention(b=2, lq=4, ref=(3, 4))
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    c = attention_centroids(attn)
    total = 0.0
    for n in range(2):
        for j in range(4):
            for y in range(3):
                for x in range(4):
                    d = math.hypot(y - c[n, j, 0].item(), x - c[n, j, 1].item())
                    total += math.exp(-d / (2 * 0.8**2)) * float(mask[n, j]) * attn[n, j, y, x].item()
    expected = -2.0 * total / (2 * 4 * 3 * 4)
    assert cwg_loss(attn, mask, sigma=0.8).item() == pytest.approx(expected, rel=1e-12)


def test_cwg_gradient_flows_through_the_centroid():
    # the official code does not detach c_j; detaching it changes the gradient
    attn = random_attention().requires_grad_()
    (through,) = torch.autograd.grad(cwg_loss(attn, MASK_ALL.expand(2, 4)), attn)
    (detached,) = torch.autograd.grad(
        cwg_loss(attn, MASK_ALL.expand(2, 4), centroids=attention_centroids(attn).detach()), attn
    )
    assert not torch.allclose(through, detached)


def test_cwg_rewards_peaked_attention():
    peaked, uniform = hand_attention()[:, :1], torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.bool)
    assert cwg_loss(peaked, one) < cwg_loss(uniform, one) < 0


# ---------------------------------------------------------------- TV


def test_tv_hand_example():
    # field c[y,x]: (0,0)=(0,0) (0,1)=(0,1) (1,0)=(2,1) (1,1)=(1,1); mask (1,1) out
    # vertical:   (1,0)-(0,0) = (2,1) -> 4 + 1 = 5, kept;  (1,1)-(0,1) masked.  mean over 1*1*2*2 = 4 -> 1.25
    # horizontal: (0,1)-(0,0) = (0,1) -> 1, kept;          (1,1)-(1,0) masked.  mean over 4 -> 0.25
    assert tv_loss(HAND_CENTROIDS, MASK_3_OUT, GRID, weight=1.0).item() == pytest.approx(1.5, rel=1e-12)
    assert tv_loss(HAND_CENTROIDS, MASK_3_OUT, GRID).item() == pytest.approx(1.5e-4, rel=1e-12)
    # all masked adds (1,1)-(0,1) = (1,0) -> 1 and (1,1)-(1,0) = (-1,0) -> 1: (6 + 2) / 4
    assert tv_loss(HAND_CENTROIDS, MASK_ALL, GRID, weight=1.0).item() == pytest.approx(2.0, rel=1e-12)


def test_tv_is_not_normalised_by_the_mask_sum():
    # a 2x3 grid with only the first two queries of row 0 masked: one horizontal pair, difference (0, 1)
    c = torch.zeros(1, 6, 2, dtype=torch.float64)
    c[0, 1, 1] = 1.0
    mask = torch.tensor([[True, True, False, False, False, False]])
    # horizontal elements B*2*2*2 = 8 -> 1/8; vertical pairs all masked -> 0
    assert tv_loss(c, mask, (2, 3), weight=1.0).item() == pytest.approx(1 / 8, rel=1e-12)


def test_tv_rejects_a_wrong_grid():
    with pytest.raises(ValueError, match="grid"):
        tv_loss(HAND_CENTROIDS, MASK_ALL, (3, 2))


# ---------------------------------------------------------------- DCML


def test_dcml_hand_example():
    # pairs: right-of (0->1), (2->3); below (0->2), (1->3); q3 masked out
    # (0->1) relu(c1x - c0x) = 1;  (0->2) relu(c2y - c0y) = 2  -> 3, mean over B*Lq*Lq = 16
    assert dcml_loss(HAND_CENTROIDS, MASK_3_OUT, GRID).item() == pytest.approx(-0.01 * 3 / 16, rel=1e-12)
    # all masked adds (2->3) relu(1 - 1) = 0 and (1->3) relu(1 - 0) = 1
    assert dcml_loss(HAND_CENTROIDS, MASK_ALL, GRID, weight=1.0).item() == pytest.approx(-4 / 16, rel=1e-12)


def test_dcml_clips_misordered_pairs():
    # c0=(3,3) c1=(3,1) c2=(1,3) c3=(5,0):
    # (0->1) relu(1-3)=0, (0->2) relu(1-3)=0, (2->3) relu(0-3)=0, (1->3) relu(5-3)=2
    c = torch.tensor([[[3.0, 3.0], [3.0, 1.0], [1.0, 3.0], [5.0, 0.0]]], dtype=torch.float64)
    assert dcml_loss(c, MASK_ALL, GRID, weight=1.0).item() == pytest.approx(-2 / 16, rel=1e-12)


def naive_dcml(centroids, mask, grid, weight):
    _, wq = grid
    b, lq, _ = centroids.shape
    total = 0.0
    for n in range(b):
        for i in range(lq):
            for j in range(i + 1, lq):
                if not (mask[n, i] and mask[n, j]):
                    continue
                (ri, ci), (rj, cj) = divmod(i, wq), divmod(j, wq)
                if ri == rj and cj > ci:
                    total += max(centroids[n, j, 1].item() - centroids[n, i, 1].item(), 0.0)
                elif ci == cj and rj > ri:
                    total += max(centroids[n, j, 0].item() - centroids[n, i, 0].item(), 0.0)
    return -weight * total / (b * lq * lq)


def test_dcml_matches_naive_double_loop():
    g = torch.Generator().manual_seed(1)
    grid = (3, 4)
    centroids = torch.rand(2, 12, 2, generator=g, dtype=torch.float64) * 5
    mask = torch.rand(2, 12, generator=g) > 0.3
    expected = naive_dcml(centroids, mask, grid, weight=0.01)
    assert expected != 0
    assert dcml_loss(centroids, mask, grid).item() == pytest.approx(expected, rel=1e-12)


def test_raster_pair_masks():
    right_of, below = raster_pair_masks((2, 3))  # queries 0 1 2 / 3 4 5
    assert right_of.nonzero().tolist() == [[0, 1], [0, 2], [1, 2], [3, 4], [3, 5], [4, 5]]
    assert below.nonzero().tolist() == [[0, 3], [1, 4], [2, 5]]


# ---------------------------------------------------------------- masking and gradients


def test_masked_out_queries_change_nothing_and_get_no_gradient():
    attn = random_attention(b=2, lq=4).requires_grad_()
    warped = torch.zeros(2, 1, 4, 4)
    warped[:, :, :2, :] = 1.0  # top row of the 2x2 query grid: queries 0, 1
    out = attention_losses(attn, warped, GRID, entropy_floor=5.0, entropy_floor_weight=1.0)
    out["total"].backward()
    assert attn.grad[:, :2].abs().sum() > 0
    assert attn.grad[:, 2:].abs().max() == 0
    other = attn.detach().clone()
    other[:, 2:] = random_attention(b=2, lq=2, seed=7)
    again = attention_losses(other, warped, GRID, entropy_floor=5.0, entropy_floor_weight=1.0)
    for key in ("cwg", "tv", "dcml", "entropy_floor", "total", "attention_entropy", "attention_max_prob"):
        torch.testing.assert_close(again[key], out[key].detach(), msg=key)


def test_empty_mask_gives_zero_losses_and_nan_diagnostics():
    out = attention_losses(
        random_attention(), torch.zeros(2, 1, 4, 4), GRID, entropy_floor=1.0, entropy_floor_weight=1.0
    )
    for key in ("cwg", "tv", "dcml", "entropy_floor", "total"):
        assert out[key].item() == 0.0, key
    assert math.isnan(out["attention_entropy"]) and math.isnan(out["attention_max_prob"])


@pytest.mark.parametrize(
    "loss",
    [
        lambda a, m: cwg_loss(a, m),
        lambda a, m: cwg_loss(a, m, sigma=0.7),
        lambda a, m: tv_loss(attention_centroids(a), m, GRID, weight=1.0),
        lambda a, m: dcml_loss(attention_centroids(a), m, GRID, weight=1.0),
        lambda a, m: entropy_floor_loss(a, m, floor=5.0, weight=1.0),
        lambda a, m: correspondence_ce_loss(a, torch.tensor([[0, 4, 8, 2], [1, 3, 5, 7]]), m),
    ],
    ids=["cwg", "cwg_sigma", "tv", "dcml", "entropy_floor", "correspondence_ce"],
)
def test_gradcheck(loss):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    assert torch.autograd.gradcheck(lambda z: loss(z.softmax(-1).reshape(2, 4, 3, 3), mask), (logits,))


def test_gradcheck_attention_losses_total():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    warped = torch.ones(1, 1, 2, 2, dtype=torch.float64)

    def total(z):
        attn = z.softmax(-1).reshape(1, 4, 3, 3)
        weights = {"tv_weight": 1.0, "dcml_weight": 1.0, "entropy_floor": 5.0, "entropy_floor_weight": 1.0}
        return attention_losses(attn, warped, GRID, **weights)["total"]

    assert torch.autograd.gradcheck(total, (logits,))


def test_collapsed_attention_has_finite_gradients():
    # exactly one-hot float32 rows (the collapse docs/toy_world.md measured): distance 0 and p = 0 must not give NaN
    attn = torch.zeros(1, 4, 3, 3)
    attn[0, :, 1, 1] = 1.0
    attn.requires_grad_()
    out = attention_losses(attn, torch.ones(1, 1, 2, 2), GRID, entropy_floor=1.0, entropy_floor_weight=1.0)
    out["total"].backward()
    assert torch.isfinite(attn.grad).all()
    assert out["attention_entropy"].item() == 0.0 and out["attention_max_prob"].item() == 1.0


# ---------------------------------------------------------------- combined, guards, diagnostics


def test_attention_losses_sums_the_paper_terms_at_paper_weights():
    attn = hand_attention()
    warped = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    warped[0, 0, 1, 1] = 0.0  # query 3 outside the garment
    out = attention_losses(attn, warped, GRID)
    assert out["cwg"].item() == pytest.approx(-2.0 * (1 + 2 * math.exp(-0.5)) / 36, rel=1e-12)
    assert out["tv"].item() == pytest.approx(1.5e-4, rel=1e-12)
    assert out["dcml"].item() == pytest.approx(-0.01 * 3 / 16, rel=1e-12)
    assert out["entropy_floor"].item() == 0.0
    torch.testing.assert_close(out["total"], out["cwg"] + out["tv"] + out["dcml"])


def test_diagnostics_hand_example():
    # masked queries q0 (one-hot: H = 0, max 1), q1 and q2 (two halves: H = ln 2, max 1/2)
    d = attention_diagnostics(hand_attention().requires_grad_(), MASK_3_OUT)
    assert d["attention_entropy"].item() == pytest.approx(2 * math.log(2) / 3, rel=1e-12)
    assert d["attention_max_prob"].item() == pytest.approx(2 / 3, rel=1e-12)
    assert not d["attention_entropy"].requires_grad


def test_entropy_floor_hand_example():
    # floor 1: relu(1 - 0) = 1 for q0, relu(1 - ln 2) for q1 and q2; mean over the 3 masked queries, weight 2
    expected = 2 * (1 + 2 * (1 - math.log(2))) / 3
    assert entropy_floor_loss(hand_attention(), MASK_3_OUT, 1.0, 2.0).item() == pytest.approx(expected, rel=1e-12)
    assert entropy_floor_loss(hand_attention(), MASK_3_OUT, 0.0, 2.0).item() == 0.0


def test_cwg_warmup_guard():
    attn, warped = random_attention(), torch.ones(2, 1, 2, 2)
    before = attention_losses(attn, warped, GRID, cwg_warmup_steps=10, step=9)
    after = attention_losses(attn, warped, GRID, cwg_warmup_steps=10, step=10)
    assert before["cwg"].item() == 0.0
    torch.testing.assert_close(before["total"], before["tv"] + before["dcml"])
    torch.testing.assert_close(after["cwg"], cwg_loss(attn, torch.ones(2, 4, dtype=torch.bool)))
    assert cwg_is_active(None, 0)
    with pytest.raises(ValueError, match="cwg_warmup_steps"):
        attention_losses(attn, warped, GRID, cwg_warmup_steps=10)


def test_paper_size_runs_in_half_precision_input():
    attn = (0.1 * torch.randn(2, 192, 37 * 28)).softmax(-1)  # near-uniform: entropy ~ log(1036)
    attn = attn.reshape(2, 192, 37, 28).half()
    out = attention_losses(attn, torch.ones(2, 1, 64, 48), (16, 12))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    assert out["attention_entropy"].item() == pytest.approx(math.log(37 * 28), abs=0.1)


def test_attention_losses_rejects_a_wrong_grid():
    with pytest.raises(ValueError, match="query grid"):
        attention_losses(random_attention(), torch.ones(2, 1, 2, 2), (3, 2))


# ---------------------------------------------------------------- toy correspondence control


def test_correspondence_targets_hand_example():
    # person 4x4 -> query grid 2x2 (2x2-pixel blocks); cloth 6x6 -> reference grid 3x3 (2x2-pixel cells)
    corr = torch.full((1, 2, 4, 4), -1.0)
    corr[0, :, :2, :2] = torch.tensor([0.0, 0.0])[:, None, None]  # block 0: source (0,0) -> cell (0,0) = 0
    corr[0, :, :2, 2:] = torch.tensor([4.0, 5.0])[:, None, None]  # block 1: centre (4.5,5.5)/2 -> cell (2,2) = 8
    corr[0, :, 2, 0] = torch.tensor([1.0, 1.0])  # block 2: 1 of 4 pixels covered -> invalid
    corr[0, :, 2, 2] = torch.tensor([2.0, 2.0])  # block 3: 2 of 4 covered -> valid,
    corr[0, :, 3, 3] = torch.tensor([3.0, 4.0])  # mean (2.5, 3), centre (3, 3.5)/2 -> cell (1,1) = 4
    targets, valid = correspondence_targets(corr, cloth_size=(6, 6), query_grid=(2, 2), ref_grid=(3, 3))
    assert valid.tolist() == [[True, True, False, True]]
    assert targets[valid].tolist() == [0, 8, 4]


def test_correspondence_targets_identity_round_trip():
    # a garment pasted 1:1 (person pixel (r,c) shows cloth pixel (r,c)) on a 12x8 image: query grid == reference grid
    rows, cols = torch.meshgrid(torch.arange(12.0), torch.arange(8.0), indexing="ij")
    corr = torch.stack([rows, cols])[None]
    targets, valid = correspondence_targets(corr, (12, 8), (6, 4), (6, 4))
    assert valid.all() and targets.tolist() == [list(range(24))]


def test_correspondence_ce_hand_example():
    # q0 one-hot on its target -> 0;  q1 1/2 on target cell 2 = (0,2) -> ln 2;  q2 1/2 on target 6 = (2,0) -> ln 2
    # q3 invalid.  mean over the 3 valid queries
    targets = torch.tensor([[0, 2, 6, 0]])
    loss = correspondence_ce_loss(hand_attention(), targets, MASK_3_OUT)
    assert loss.item() == pytest.approx(2 * math.log(2) / 3, rel=1e-12)
    assert correspondence_ce_loss(hand_attention(), targets, MASK_3_OUT, weight=0.1).item() == pytest.approx(
        0.1 * 2 * math.log(2) / 3, rel=1e-12
    )
    assert correspondence_ce_loss(hand_attention(), targets, torch.zeros(1, 4, dtype=torch.bool)).item() == 0.0
