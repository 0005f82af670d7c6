"""UNet cross-attention: the G2R softmax's normaliser (and R2G's statistics) from the attention kernel's own
log-sum-exp ("kernel-lse") against today's recomputation ("recomputed"): equal maps to rtol 1e-5, the UNet's output
bit-identical, the path taken reported."""
import logging

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor
from helpers.unets import sharp_four_level_unet

from i2am.engine import AttributionCapture, CaptureConfig
from i2am.engine.kernel_stats import KERNEL_LSE, RECOMPUTED
from i2am.engine.scores import spatial_scores

REF_GRID = (8, 6)
SRAM_LAYER = "up_blocks.2.attentions.1.transformer_blocks.0.attn2"
RTOL, ATOL = 1e-5, 1e-7   # exp(logit - lse) against softmax: fp32 sums in different orders


@pytest.fixture(scope="module")
def unet():
    return sharp_four_level_unet()


def _inputs(batch, tokens, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.randn(batch, tokens, 16, generator=g)


def _capture(unet, x, ctx, region=None, **cfg):
    cfg = CaptureConfig(num_steps=2, time_groups=2, **cfg)
    outs = []
    with AttributionCapture(unet, cfg, ref_grid=REF_GRID if ctx.shape[1] > 1 else None) as cap, torch.no_grad():
        cap.set_region_mask(region)
        for step in range(2):
            outs.append(unet(x, 999 - 500 * step, ctx).sample)
    return cap, outs


@pytest.mark.parametrize("case", ["plain", "cfg_chunked_region"])
def test_kernel_statistics_and_recomputation_give_equal_maps(unet, case, caplog):
    cfg = dict(sram_layers=(SRAM_LAYER,))
    x, ctx = _inputs(2, REF_GRID[0] * REF_GRID[1])
    region = None
    if case != "plain":   # stacked CFG [uncond, cond], query chunks of 8 positions, a region-weighted G2R
        x, ctx = torch.cat([x, x]), torch.cat([_inputs(2, 48, seed=1)[1], ctx])
        cfg.update(cfg_layout="uncond_cond", chunk_budget=8 * 2 * 2 * 48, one_pass_budget=8 * 2 * 2 * 48)
        region = torch.zeros(2, 1, 8, 8)
        region[0, :, 2:6] = 1
        region[1, :, :, 4:] = 1
    with torch.no_grad():
        plain = [unet(x, 999 - 500 * step, ctx).sample for step in range(2)]
    with caplog.at_level(logging.INFO, logger="i2am.engine.capture"):
        kernel, outs = _capture(unet, x, ctx, region, **cfg)
    assert f"[{KERNEL_LSE}]" in caplog.text
    recomputed, _ = _capture(unet, x, ctx, region, kernel_stats=False, **cfg)
    assert all(torch.equal(a, b) for a, b in zip(outs, plain))           # the UNet's output, bit for bit
    assert (kernel.stats_path, recomputed.stats_path) == (KERNEL_LSE, RECOMPUTED)
    kernel_maps, recomputed_maps = kernel.maps(), recomputed.maps()
    assert kernel_maps.meta["stats_path"] == KERNEL_LSE and recomputed_maps.meta["stats_path"] == RECOMPUTED
    assert set(kernel_maps.raw) == set(recomputed_maps.raw) and f"sram/{SRAM_LAYER}" in kernel_maps.raw
    for key, value in recomputed_maps.raw.items():
        torch.testing.assert_close(kernel_maps.raw[key], value, rtol=RTOL, atol=ATOL, msg=key)


def test_processor_without_one_sdpa_call_recomputes(unet):
    x, ctx = _inputs(1, 48)
    before = dict(unet.attn_processors)
    unet.set_attn_processor(AttnProcessor())   # attention as explicit matmuls: no kernel to read
    try:
        cap, _ = _capture(unet, x, ctx)
    finally:
        unet.set_attn_processor(before)
    assert cap.stats_path == RECOMPUTED
    single, _ = _capture(unet, *_inputs(1, 1))   # one token: no key softmax, no statistics needed
    assert single.stats_path is None and "stats_path" not in single.maps().meta


def test_r2g_recomputed_where_a_token_column_underflows():
    """A token no query attends to (logits ~100 below every row's log-sum-exp): the column sums of the lse form
    would lose its entries, so R2G comes from the logits; G2R still from exp(logit - lse)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 12, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g)
    q[..., 0], k[..., 0] = 10.0, 3.0
    k[..., 4, 0] = -40.0
    lse = torch.logsumexp(q @ k.transpose(-1, -2) * 0.5, -1)
    with_lse = spatial_scores(q, k, 0.5, chunk=64, lse=lse, sram=True)
    plain = spatial_scores(q, k, 0.5, chunk=64, sram=True)
    assert with_lse["r2g"].isfinite().all()
    for key, value in plain.items():
        torch.testing.assert_close(with_lse[key], value, rtol=RTOL, atol=ATOL, msg=key)
