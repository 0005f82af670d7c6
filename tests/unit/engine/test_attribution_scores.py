"""The pure score functions against the textbook softmaxes, with query chunks that do not divide Lq."""
import pytest
import torch

from i2am.engine.scores import accumulate, r2g_single_token, spatial_scores, split_heads


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
    for weight in (None, w):
        weighted = probs if weight is None else probs * weight[..., None]
        g2r = weighted.reshape(2, 3, 3, 12, 10).sum(-2)
        for chunk, lse in ((5, None), (12, None), (1000, None), (1000, torch.logsumexp(logits, -1).float())):
            out = spatial_scores(q, k, 8 ** -0.5, chunk=chunk, query_weight=weight, frames=3, lse=lse)
            torch.testing.assert_close(out["g2r"].double(), g2r, rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(out["r2g"].double(), r2g, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="do not split into 5 frames"):
        spatial_scores(q, k, 1.0, frames=5)


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
