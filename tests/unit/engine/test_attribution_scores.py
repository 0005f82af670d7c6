"""The pure score functions against the textbook softmaxes, with query chunks that do not divide Lq."""
import pytest
import torch

from i2am.engine import scores
from i2am.engine.scores import accumulate, r2g_single_token, segment_scores, spatial_scores, split_heads


def naive(q, k, scale):
    logits = q.double() @ k.double().transpose(-1, -2) * scale
    return logits


def test_spatial_scores_match_full_softmaxes_for_any_chunk():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 37, 8, generator=g) * 2, torch.randn(2, 3, 12, 8, generator=g) * 2
    w = (torch.rand(2, 1, 37, generator=g) > 0.5).float()
    logits = naive(q, k, 8 ** -0.5)
    r2g = torch.softmax(logits, -2).mean(-1)
    g2r = (torch.softmax(logits, -1) * w[..., None]).sum(-2)
    sram = torch.softmax(logits, -1).mean(1)
    for chunk in (1, 5, 37, 1000):
        out = spatial_scores(q, k, 8 ** -0.5, chunk=chunk, query_weight=w, sram=True)
        torch.testing.assert_close(out["r2g"].double(), r2g, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out["g2r"].double(), g2r, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out["sram"].double(), sram, rtol=1e-5, atol=1e-7)
        assert set(out) == {"r2g", "g2r", "sram"}


def test_video_g2r_is_kept_per_frame_and_r2g_spans_all_frames():
    """3 frames of 12 queries; chunks that cut across frames, with and without a weight and the kernel's lse."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 3, 36, 8, generator=g) * 2, torch.randn(2, 3, 10, 8, generator=g) * 2
    w = (torch.rand(2, 1, 36, generator=g) > 0.5).float()
    logits = naive(q, k, 8 ** -0.5)
    r2g = torch.softmax(logits, -2).mean(-1)
    probs = torch.softmax(logits, -1)
    lse_kernel = torch.logsumexp(logits, -1).float()
    for weight in (None, w):
        weighted = probs if weight is None else probs * weight[..., None]
        g2r = weighted.reshape(2, 3, 3, 12, 10).sum(-2)
        for chunk, lse in ((5, None), (12, None), (1000, None), (5, lse_kernel), (1000, lse_kernel)):
            out = spatial_scores(q, k, 8 ** -0.5, chunk=chunk, query_weight=weight, frames=3, lse=lse)
            torch.testing.assert_close(out["g2r"].double(), g2r, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(out["r2g"].double(), r2g, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="do not split into 5 frames"):
        spatial_scores(q, k, 1.0, frames=5)


def test_segment_scores_of_a_video_keep_g2r_per_frame():
    """Both readings of a segment of 4 keys out of 10 (the row's lse over all 10, two masked for sample 1), 3 frames
    of 12 queries in chunks that cut across frames."""
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 3, 36, 8, generator=g) * 2, torch.randn(2, 3, 10, 8, generator=g) * 2
    bias = torch.zeros(2, 10)
    bias[1, [7, 9]] = float("-inf")
    logits = naive(q, k, 8 ** -0.5) + bias[:, None, None, :].double()
    segment = slice(6, 10)
    share = torch.softmax(logits, -1)[..., segment]
    own = torch.softmax(logits[..., segment], -1)
    kept = bias[:, segment] == 0
    own_r2g = (torch.softmax(logits[..., segment], -2).nan_to_num() * kept[:, None, None, :]).sum(-1)
    own_r2g = own_r2g / kept.sum(-1)[:, None, None]
    for chunk, tile in ((5, None), (1000, None), (1000, 5 * 2 * 3 * 4)):   # last: tiles of 5 queries cut frames
        out = segment_scores(q, k[..., segment, :], 8 ** -0.5, torch.logsumexp(logits, -1).float(), chunk=chunk,
                             bias=bias[:, segment], share=True, frames=3, tile=tile)
        torch.testing.assert_close(out["share"]["g2r"].double(), share.reshape(2, 3, 3, 12, 4).sum(-2), rtol=1e-5,
                                   atol=1e-7)
        torch.testing.assert_close(out["share"]["r2g"].double(), share.sum(-1), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out["own"]["g2r"].double(), own.reshape(2, 3, 3, 12, 4).sum(-2), rtol=1e-5,
                                   atol=1e-7)
        torch.testing.assert_close(out["own"]["r2g"].double(), own_r2g, rtol=1e-5, atol=1e-7)


def test_single_token_r2g_is_a_softmax_over_queries_in_fp32():
    q, k = torch.randn(1, 4, 50, 16).half(), torch.randn(1, 4, 1, 16).half()
    out = r2g_single_token(q, k, 0.25)
    assert out.dtype == torch.float32 and out.shape == (1, 4, 50)
    torch.testing.assert_close(out.double(), torch.softmax(naive(q, k, 0.25)[..., 0], -1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 4))


def test_split_heads_gives_the_per_head_q_and_k_the_layer_uses():
    from diffusers.models.attention_processor import Attention

    layer = Attention(query_dim=16, cross_attention_dim=8, heads=4, dim_head=4, qk_norm="layer_norm")
    q, k = torch.randn(2, 6, 16), torch.randn(2, 3, 16)
    qh, kh = split_heads(layer, q, k)
    assert qh.shape == (2, 4, 6, 4) and kh.shape == (2, 4, 3, 4)
    torch.testing.assert_close(qh[:, 1], layer.norm_q(q[..., 4:8]))   # head 1 = channels 4..7, then the q norm
    torch.testing.assert_close(kh[:, 3], layer.norm_k(k[..., 12:16]))


def test_accumulate_keeps_time_groups_sums_sram_and_names_the_owner_when_the_batch_changes():
    acc = {}
    accumulate(acc, "r2g", "r2g", torch.ones(2, 3, 5), 1, 4, "layer up.0")
    accumulate(acc, "r2g", "r2g", torch.ones(2, 3, 5), 1, 4, "layer up.0")
    accumulate(acc, "sram", "sram", torch.ones(2, 5, 7), 3, 4, "layer up.0")
    assert acc["r2g"].shape == (2, 4, 3, 5) and acc["r2g"][:, 1].eq(2).all() and acc["r2g"][:, [0, 2, 3]].eq(0).all()
    assert acc["sram"].shape == (2, 5, 7) and acc["sram"].eq(1).all()
    with pytest.raises(RuntimeError, match="layer up.0: batch changed from 2 to 1"):
        accumulate(acc, "r2g", "r2g", torch.ones(1, 3, 5), 0, 4, "layer up.0")


def _segment_case(seed=0):
    """Queries over 12 keys of which keys 3..8 are the segment scored; each sample masks one segment key."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 3, 10, 8, generator=g), torch.randn(2, 3, 12, 8, generator=g)
    bias = torch.zeros(2, 12)
    bias[0, 4], bias[1, 7] = float("-inf"), float("-inf")
    logits = q @ k.transpose(-1, -2) * 0.3 + bias[:, None, None, :]
    return q, k, bias, logits


@pytest.mark.parametrize("chunk", [64, 3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("tile", [None, 1, 80])   # a chunk's block in one tile, a query per tile, 2 queries per tile
def test_segment_scores_give_both_readings_of_one_segment(chunk, weighted, tile):
    """From the log-sum-exp of whole rows: "share" is the mass out of the whole softmax, "own" equals
    spatial_scores on the segment alone (each sample on its unmasked keys; a masked key scores 0), whatever the
    tiles the chunks' blocks are formed in."""
    q, k, bias, logits = _segment_case()
    weight = torch.rand(2, 1, 10, generator=torch.Generator().manual_seed(1)) if weighted else None
    seg = slice(3, 9)
    out = segment_scores(q, k[:, :, seg], 0.3, torch.logsumexp(logits, -1), chunk=chunk, sram=True,
                         query_weight=weight, bias=bias[:, seg], share=True, tile=tile)
    full = logits.softmax(-1)[..., seg]
    w = torch.ones(2, 1, 10) if weight is None else weight
    tol = dict(rtol=1e-5, atol=1e-7)   # exp(logit - lse) against softmax: fp32 sums in different orders
    torch.testing.assert_close(out["share"]["r2g"], full.sum(-1), **tol)
    torch.testing.assert_close(out["share"]["g2r"], (w[..., None] * full).sum(-2), **tol)
    torch.testing.assert_close(out["share"]["sram"], full.mean(-3), **tol)
    for b in range(2):
        keep = bias[b, seg] == 0
        alone = spatial_scores(q[b:b + 1], k[b:b + 1, :, seg][:, :, keep], 0.3, chunk=chunk, sram=True,
                               query_weight=None if weight is None else weight[b:b + 1])
        torch.testing.assert_close(out["own"]["r2g"][b:b + 1], alone["r2g"], **tol)
        torch.testing.assert_close(out["own"]["g2r"][b:b + 1, :, keep], alone["g2r"], **tol)
        torch.testing.assert_close(out["own"]["sram"][b:b + 1, :, keep], alone["sram"], **tol)
        assert not out["own"]["g2r"][b, :, ~keep].any() and not out["own"]["sram"][b, :, ~keep].any()


@pytest.mark.parametrize("tile", [None, 1])
def test_segment_scores_leave_own_softmax_to_the_caller_where_fp32_would_lose_it(tile):
    """A segment ~100 logits below the rest of every row: its mass exp(logit - lse) underflows fp32, so "own" (its
    softmax over the segment alone) is None, while "share" (that mass itself) is still exact."""
    q, k, _, _ = _segment_case()
    k[:, :, :3] *= 0.0
    q[..., 0], k[:, :, :3, 0] = 20.0, 20.0   # keys 0..2 dominate every row: 120 above the segment's logits
    logits = q @ k.transpose(-1, -2) * 0.3
    out = segment_scores(q, k[:, :, 3:], 0.3, torch.logsumexp(logits, -1), chunk=64, share=True, tile=tile)
    assert out["own"] is None
    torch.testing.assert_close(out["share"]["r2g"], logits.softmax(-1)[..., 3:].sum(-1), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("chunk", [1000, 7])
def test_segment_scores_over_whole_rows_equal_the_recomputed_softmaxes_in_any_tiles(chunk, monkeypatch):
    """The UNet path (the kernel's lse over exactly these keys): tiles of one query, of 3 and 4 queries (one that
    does not divide a chunk) and one per chunk give spatial_scores' recomputed R2G, weighted G2R and SRAM; so does
    the default on a CPU running one thread (CPU_TILE made 2 queries' logits here)."""
    monkeypatch.setattr(scores, "CPU_TILE", 2 * 8 * 9)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 4, 23, 8, generator=g) * 2, torch.randn(2, 4, 9, 8, generator=g) * 2
    w = torch.rand(2, 1, 23, generator=g)
    recomputed = spatial_scores(q, k, 0.4, chunk=chunk, query_weight=w, sram=True)
    lse = torch.logsumexp(q @ k.transpose(-1, -2) * 0.4, -1)
    for tile in (1, 3 * 8 * 9, 4 * 8 * 9, None):
        out = segment_scores(q, k, 0.4, lse, chunk=chunk, sram=True, query_weight=w, whole_rows=True, tile=tile)
        for key, value in recomputed.items():
            torch.testing.assert_close(out["own"][key], value, rtol=1e-5, atol=1e-7, msg=f"{key}, tile {tile}")
