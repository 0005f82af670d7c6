"""The ``share`` normalisation's per-query log-sum-exp taken from the attention kernel itself ("kernel-lse") against
its chunked recomputation ("recomputed"): equal maps (rtol 1e-5, every relation, direction and SRAM), the model's
output bit-identical with the capture on or off, and the path taken reported."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from helpers.flux_inputs import kontext_inputs

import i2am
from i2am import toy
from i2am.adapters.text_routing import (
    TextRouting,
    build_text_routing,
    generated_output,
    planted_patches,
    routing_inputs,
)
from i2am.engine import CaptureConfig, scores
from i2am.engine.joint import JointAttentionCapture, find_blocks
from i2am.engine.kernel_stats import KERNEL_LSE, RECOMPUTED, attention_with_lse

# exp(logit - lse) against softmax: the two log-sum-exps are fp32 sums in different orders (last-bit differences)
RTOL, ATOL = 1e-5, 1e-7
STEPS = 2


def _qkv(heads_first: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 3, 40, 16) if heads_first else (2, 40, 3, 16)
    q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
    return (q, k, v) if heads_first else tuple(x.permute(0, 2, 1, 3) for x in (q, k, v))   # diffusers' layout


def _mask(kind: str | None):
    if kind is None:
        return None
    keep = torch.ones(2, 1, 1, 40, dtype=torch.bool)
    keep[1, ..., -7:] = False   # the second sample's last keys are padding
    if kind == "bool":
        return keep
    return torch.zeros(keep.shape).masked_fill_(~keep, float("-inf")) + 0.25 * torch.arange(40.0)


@pytest.mark.parametrize("heads_first", [True, False])
@pytest.mark.parametrize("mask", [None, "bool", "additive"])
def test_output_is_sdpa_output_and_lse_is_the_row_logsumexp(heads_first, mask):
    q, k, v = _qkv(heads_first)
    attn_mask = _mask(mask)
    out, lse = attention_with_lse(q, k, v, attn_mask=attn_mask)
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))
    assert out.stride() == F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).stride()
    logits = q.double() @ k.double().transpose(-1, -2) * 16 ** -0.5
    if attn_mask is not None:
        additive = attn_mask if mask == "additive" else torch.zeros(attn_mask.shape).masked_fill_(~attn_mask,
                                                                                                  float("-inf"))
        logits = logits + additive.double()
    torch.testing.assert_close(lse.double(), torch.logsumexp(logits, -1), rtol=1e-6, atol=1e-6)


def test_no_statistics_where_sdpa_would_run_otherwise():
    q, k, v = _qkv(True)
    assert attention_with_lse(q, k, v, dropout_p=0.1) is None
    assert attention_with_lse(q, k, v, is_causal=True) is None
    assert attention_with_lse(q.requires_grad_(), k, v) is None    # training: SDPA's own autograd path
    with torch.no_grad():
        assert attention_with_lse(q, k, v) is not None


# pipelines: true CFG (Kontext, Qwen with text padding), two references (FLUX.2), stacked CFG on the sdpa backend (SD3)
def _kontext(pipe):
    return dict(image=toy.image(96, 64), **toy.prompt(pipe, negative=True), true_cfg_scale=2.0, height=64, width=64,
                _auto_resize=False, max_area=64 * 64)


def _flux2(pipe):
    return dict(image=[toy.image(64, 64), toy.image(96, 64, seed=3)], **toy.prompt(pipe), height=64, width=64)


def _qwen(pipe):
    prompt = toy.prompt(pipe, negative=True, tokens=5)
    prompt["prompt_embeds_mask"] = torch.tensor([[1, 1, 1, 0, 0]])            # padded text keys are masked
    prompt["negative_prompt_embeds_mask"] = torch.tensor([[1, 1, 1, 1, 0]])
    return dict(image=toy.image(96, 64), **prompt, true_cfg_scale=2.0, height=64, width=64)


def _sd3(pipe):
    return dict(**toy.prompt(pipe, negative=True), guidance_scale=2.0, height=64, width=64)


CASES = {"FluxKontextPipeline": _kontext, "Flux2Pipeline": _flux2, "QwenImageEditPipeline": _qwen,
         "StableDiffusion3Pipeline": _sd3}


def _run(pipe, kwargs):
    context = toy.qwen_reference_area(64 * 64) if type(pipe).__name__ == "QwenImageEditPipeline" else None
    with context or torch.no_grad():
        return pipe(num_inference_steps=STEPS, output_type="pt", generator=torch.Generator().manual_seed(0),
                    **kwargs).images


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_statistics_and_recomputation_give_equal_maps(name, caplog):
    pipe = toy.pipeline(name)
    kwargs = CASES[name](pipe)
    plain = _run(pipe, kwargs)
    blocks = [b.name for b in find_blocks(pipe.transformer)]
    maps = {}
    for kernel in (True, False):
        cfg = CaptureConfig(time_groups=2, sram_layers=[blocks[0], blocks[-1]], kernel_stats=kernel)
        with caplog.at_level(logging.INFO, logger="i2am.engine.joint"), i2am.trace(pipe, cfg) as tr:
            assert torch.equal(_run(pipe, kwargs), plain)               # the model's output, bit for bit
        maps[kernel] = tr.maps
    assert maps[True].meta["stats_path"] == KERNEL_LSE
    assert maps[False].meta["stats_path"] == RECOMPUTED
    assert f"[{KERNEL_LSE}]" in caplog.text and "CaptureConfig.kernel_stats=False" in caplog.text
    assert set(maps[True].raw) == set(maps[False].raw)
    shares = [key for key in maps[True].raw if "/share:" in key]
    assert {key.split("/")[0] for key in shares} == {"r2g", "g2r", "sram"}
    for key, value in maps[False].raw.items():
        torch.testing.assert_close(maps[True].raw[key], value, rtol=RTOL, atol=ATOL, msg=key)


def _capture(transformer, inputs, region=None, **cfg):
    capture = JointAttentionCapture(transformer, CaptureConfig(num_steps=1, time_groups=1, **cfg))
    capture.set_region_mask(region)
    with capture, torch.no_grad():
        out = transformer(**inputs)[0]
    return out, capture


def test_chunked_region_masked_shares_agree():
    """Several query chunks (a tiny chunk_budget) and a region mask weighting the G2R sum: both paths agree."""
    transformer = toy.pipeline("FluxKontextPipeline").transformer
    inputs = kontext_inputs(transformer, 2, seed=1)
    region = torch.zeros(2, 1, 4, 4)
    region[0, :, :2] = 1
    region[1, :, :, 1:] = 1
    with torch.no_grad():
        plain = transformer(**inputs)[0]
    sram = ["transformer_blocks.0.attn"]
    out, kernel = _capture(transformer, inputs, region, chunk_budget=64, one_pass_budget=64,
                           sram_layers=sram)
    _, recomputed = _capture(transformer, inputs, region, kernel_stats=False, sram_layers=sram)
    assert torch.equal(out, plain)
    assert (kernel.stats_path, recomputed.stats_path) == (KERNEL_LSE, RECOMPUTED)
    for key, value in recomputed.maps().raw.items():
        torch.testing.assert_close(kernel.maps().raw[key], value, rtol=RTOL, atol=ATOL, msg=key)


def test_r2g_block_formed_whole_within_one_pass_budget(monkeypatch):
    """With query chunks of a few queries (chunk_budget 64), I2AM's R2G needs every key's column sums before any
    row's score, so each chunk's logits are formed twice; a one_pass_budget that holds the whole block forms it once.
    Equal maps either way (fp32 sums in another order), output unchanged."""
    transformer = toy.pipeline("FluxKontextPipeline").transformer
    inputs = kontext_inputs(transformer, 2, seed=1)
    formed = []
    mass_tiles = scores._mass_tiles

    def counting(a, kt, lse, bias, part, block, step):
        formed.append(part.stop - part.start)
        yield from mass_tiles(a, kt, lse, bias, part, block, step)

    monkeypatch.setattr(scores, "_mass_tiles", counting)
    runs = {}
    for budget in (64, 2**29):
        formed.clear()
        out, capture = _capture(transformer, inputs, chunk_budget=64, one_pass_budget=budget,
                                sram_layers=["transformer_blocks.0.attn"])
        runs[budget] = out, capture.maps(), sum(formed), len(formed)
    (out_two, two, queries_two, blocks_two), (out_one, one, queries_one, blocks_one) = runs[64], runs[2**29]
    assert torch.equal(out_one, out_two)
    assert queries_two == 2 * queries_one and blocks_two > 2 * blocks_one   # every query's logits formed twice
    for key, value in two.raw.items():
        torch.testing.assert_close(one.raw[key], value, rtol=RTOL, atol=ATOL, msg=key)


def test_query_chunk():
    cfg = CaptureConfig(chunk_budget=1000, one_pass_budget=10_000)
    assert cfg.query_chunk(2, 5, 300, 10) == 10                               # 100 logits per query
    assert cfg.query_chunk(2, 5, 100, 10, columns_first=True) == 100          # 10,000 logits: one block
    assert cfg.query_chunk(2, 5, 101, 10, columns_first=True) == 10           # one more query: chunks again
    assert cfg.query_chunk(1, 1, 5, 5000, columns_first=False) == 1           # a query above the budget: one
    with pytest.raises(ValueError, match="one_pass_budget"):
        CaptureConfig(one_pass_budget=0)


def test_backend_without_statistics_falls_back_and_says_so(caplog):
    from diffusers.models.attention_dispatch import attention_backend

    transformer = toy.pipeline("FluxKontextPipeline").transformer
    inputs = kontext_inputs(transformer, 1, seed=1)
    with attention_backend("_native_math"), caplog.at_level(logging.INFO, logger="i2am.engine.joint"):
        _, math = _capture(transformer, inputs)
    assert math.stats_path == RECOMPUTED and math.maps().meta["stats_path"] == RECOMPUTED
    assert "kernel returns no log-sum-exp" in caplog.text
    _, i2am_only = _capture(transformer, inputs)
    assert i2am_only.stats_path == KERNEL_LSE
    only = JointAttentionCapture(transformer, CaptureConfig(num_steps=1, time_groups=1), normalisations=("i2am",))
    with only, torch.no_grad():
        transformer(**inputs)
    assert only.stats_path == KERNEL_LSE   # I2AM's own softmaxes read the kernel's log-sum-exp too


def test_an_interception_entered_before_the_capture_still_changes_the_attention():
    """A knockout entered first is the backend the capture's pass-through wraps: the capture must call it (and fall
    back to recomputing its statistics), never compute the attention itself and skip the knockout's mask."""
    model, inputs, planted = build_text_routing(), routing_inputs(2), planted_patches(2)
    with torch.no_grad():
        with TextRouting(model, planted):
            expected = generated_output(model, inputs)
        capture = JointAttentionCapture(model, CaptureConfig(num_steps=1), normalisations=("share",))
        with TextRouting(model, planted), capture:
            captured = generated_output(model, inputs)
        plain = generated_output(model, inputs)
    assert not torch.equal(expected, plain)   # the knockout changes the output ...
    assert torch.equal(captured, expected)    # ... and still does under the capture
    assert capture.stats_path == RECOMPUTED
