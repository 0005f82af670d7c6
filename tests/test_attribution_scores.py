"""The pure score functions against the textbook softmaxes, with query chunks that do not divide Lq."""
import torch

from i2am.attribution.scores import attention_entropy, r2g_single_token, spatial_scores


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
    daam = torch.softmax(logits, -1).mean(-1)
    for chunk in (1, 5, 37, 1000):
        out = spatial_scores(q, k, 8 ** -0.5, chunk=chunk, query_weight=w, sram=True, daam=True)
        torch.testing.assert_close(out["r2g"].double(), r2g, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out["g2r"].double(), g2r, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out["sram"].double(), sram, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out["daam"].double(), daam, rtol=1e-5, atol=1e-7)
    # the DAAM key-axis map is constant by construction: 1 / Lk everywhere
    torch.testing.assert_close(out["daam"], torch.full_like(out["daam"], 1 / 12))


def test_single_token_r2g_is_a_softmax_over_queries_in_fp32():
    q, k = torch.randn(1, 4, 50, 16).half(), torch.randn(1, 4, 1, 16).half()
    out = r2g_single_token(q, k, 0.25)
    assert out.dtype == torch.float32 and out.shape == (1, 4, 50)
    torch.testing.assert_close(out.double(), torch.softmax(naive(q, k, 0.25)[..., 0], -1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 4))


def test_entropy_of_uniform_and_one_hot():
    uniform = torch.full((3, 48), 1 / 48)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((3,), float(torch.log(torch.tensor(48.0)))))
    one_hot = torch.zeros(2, 48)
    one_hot[:, 5] = 1
    torch.testing.assert_close(attention_entropy(one_hot), torch.zeros(2), atol=1e-6, rtol=0)
