"""The engine against a naive reference, and its invariants (issue: foundation and attribution engine)."""
import copy
import logging

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from helpers.naive_attribution import families, record
from helpers.unets import sharp_four_level_unet

from i2am.engine import AttributionCapture, AttributionMaps, CaptureConfig

LATENT = (8, 8)
REF_GRID = (8, 6)
TOKENS = REF_GRID[0] * REF_GRID[1]
SRAM_LAYER = "up_blocks.2.attentions.1.transformer_blocks.0.attn2"


@pytest.fixture(scope="module")
def unet():
    return sharp_four_level_unet()


def inputs(batch, tokens=TOKENS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, *LATENT, generator=g), torch.randn(batch, tokens, 16, generator=g)


def run_steps(unet, x, ctx, steps):
    with torch.no_grad():
        for s in range(steps):
            unet(x, 999 - 100 * s, ctx)


def capture(unet, x, ctx, steps=4, groups=2, **cfg):
    cfg = CaptureConfig(num_steps=steps, time_groups=groups, **cfg)
    with AttributionCapture(unet, cfg, ref_grid=REF_GRID if ctx.shape[1] > 1 else None) as cap:
        run_steps(unet, x, ctx, steps)
    return cap


def test_every_family_equals_the_naive_reference(unet):
    x, ctx = inputs(2)
    cap = capture(unet, x, ctx, steps=4, groups=2)
    maps = cap.maps()
    names = [s.name for s in cap.layers]
    assert len(names) == 15
    stores = record(unet, names, lambda: run_steps(unet, x, ctx, 4))
    grids = {n: (g["query"], g["ref"]) for n, g in cap.layer_grids().items()}
    heads = cap.layers[0].module.heads
    for direction, common in (("r2g", LATENT), ("g2r", REF_GRID)):
        expected = families(stores, grids, heads, 4, 2, direction, common)
        got = getattr(maps, direction)
        for fam in ("ulam", "tlam", "hlam", "llam"):
            torch.testing.assert_close(getattr(got, fam).double(), expected[fam], rtol=1e-5, atol=1e-7,
                                       msg=f"{direction} {fam}")


def test_region_restricted_g2r_equals_naive_masked_mean(unet):
    x, ctx = inputs(2, seed=3)
    mask = torch.zeros(2, 1, 64, 64)
    mask[0, :, 16:48, 8:40] = 1
    mask[1, :, 0:32, 32:64] = 1
    cfg = CaptureConfig(num_steps=2, time_groups=1, directions=("g2r",))
    with AttributionCapture(unet, cfg, ref_grid=REF_GRID) as cap:
        cap.set_region_mask(mask)
        run_steps(unet, x, ctx, 2)
    names = [s.name for s in cap.layers]
    grids = {n: (g["query"], g["ref"]) for n, g in cap.layer_grids().items()}
    region = {n: torch.nn.functional.interpolate(mask, size=grids[n][0], mode="nearest").flatten(1).double()
              for n in names}
    stores = record(unet, names, lambda: run_steps(unet, x, ctx, 2))
    expected = families(stores, grids, cap.layers[0].module.heads, 2, 1, "g2r", REF_GRID, region=region)
    torch.testing.assert_close(cap.maps().g2r.ulam.double(), expected["ulam"], rtol=1e-5, atol=1e-7)


def test_outputs_unchanged_by_capture(unet):
    x, ctx = inputs(2, seed=1)
    with torch.no_grad():
        plain = unet(x, 500, ctx).sample
        with AttributionCapture(unet, CaptureConfig(num_steps=1, time_groups=1, sram_layers=(SRAM_LAYER,),
                                                    directions=("r2g", "g2r")), ref_grid=REF_GRID):
            captured = unet(x, 500, ctx).sample
    assert torch.equal(plain, captured)


def test_processors_restored_after_exit_and_after_exception(unet):
    before = dict(unet.attn_processors)
    capture(unet, *inputs(1), steps=1, groups=1)
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    with pytest.raises(ZeroDivisionError), AttributionCapture(unet, CaptureConfig(num_steps=1, time_groups=1),
                                                               ref_grid=REF_GRID):
        assert any(type(p).__name__ == "_CaptureProcessor" for p in unet.attn_processors.values())
        raise ZeroDivisionError
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in unet.modules())
    # self-attention is never touched: it keeps its fused SDPA processor during a capture
    with AttributionCapture(unet, CaptureConfig(num_steps=1, time_groups=1), ref_grid=REF_GRID):
        self_attn = [p for k, p in unet.attn_processors.items() if "attn1" in k]
        assert self_attn and all(isinstance(p, AttnProcessor2_0) for p in self_attn)


def test_accumulator_memory_is_flat_in_steps(unet):
    x, ctx = inputs(1)
    small = capture(unet, x, ctx, steps=10, groups=5, sram_layers=(SRAM_LAYER,))
    large = capture(unet, x, ctx, steps=100, groups=5, sram_layers=(SRAM_LAYER,))
    assert small.steps_seen == 10 and large.steps_seen == 100
    assert small.accumulator_bytes() == large.accumulator_bytes() > 0


@pytest.fixture(scope="module")
def unet64(unet):
    """A float64 copy: batched and single-sample forwards then agree to ~1e-12, so any difference left in the maps
    would come from the capture mixing samples or chunks, not from the UNet's own float32 rounding."""
    return copy.deepcopy(unet).double()


def test_batch_of_four_equals_four_batches_of_one(unet64):
    unet = unet64
    x, ctx = (t.double() for t in inputs(4, seed=2))
    whole = capture(unet, x, ctx, sram_layers=(SRAM_LAYER,)).maps()
    parts = AttributionMaps.concat([capture(unet, x[i:i + 1], ctx[i:i + 1], sram_layers=(SRAM_LAYER,)).maps()
                                    for i in range(4)])
    for key in whole.raw:
        torch.testing.assert_close(whole.raw[key], parts.raw[key], rtol=1e-5, atol=1e-6, msg=key)
    for d in ("r2g", "g2r"):
        torch.testing.assert_close(getattr(whole, d).tlam, getattr(parts, d).tlam, rtol=1e-5, atol=1e-6)


def test_cfg_layout_picks_the_conditional_chunk(unet64):
    unet = unet64
    x, cond = (t.double() for t in inputs(2, seed=4))
    uncond = inputs(2, seed=5)[1].double()
    doubled_x, doubled_ctx = torch.cat([x, x]), torch.cat([uncond, cond])
    ref_cond = capture(unet, x, cond).maps()
    ref_uncond = capture(unet, x, uncond).maps()
    picked = capture(unet, doubled_x, doubled_ctx, cfg_layout="uncond_cond").maps()
    flipped = capture(unet, doubled_x, doubled_ctx, cfg_layout="cond_uncond").maps()
    for key in ref_cond.raw:
        torch.testing.assert_close(picked.raw[key], ref_cond.raw[key], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(flipped.raw[key], ref_uncond.raw[key], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ref_cond.raw[next(iter(ref_cond.raw))], ref_uncond.raw[next(iter(ref_uncond.raw))])


def test_time_groups_follow_sampling_order(unet):
    cfg = CaptureConfig(num_steps=50, time_groups=5)
    assert [cfg.time_group(s) for s in (0, 9, 10, 19, 20, 39, 40, 49)] == [0, 0, 1, 1, 2, 3, 4, 4]
    x, ctx = inputs(1)
    cap = capture(unet, x, ctx, steps=4, groups=2)
    tlam_sum = cap.maps().raw[f"r2g/{SRAM_LAYER}"].sum(1)
    # each step adds one softmax over the query positions per head: group sums hold 2 steps' mass each
    per_group = cap.maps().raw[f"r2g/{SRAM_LAYER}"].sum((-1, -2))
    torch.testing.assert_close(per_group, torch.full_like(per_group, 2.0))
    assert tlam_sum.shape[1] == cap.layers[0].module.heads


def test_single_token_gives_r2g_and_flags_g2r_degenerate(unet, caplog):
    x, ctx = inputs(1, tokens=1)
    with caplog.at_level(logging.WARNING):
        cap = capture(unet, x, ctx, steps=2, groups=1)
    assert "degenerate" in caplog.text
    maps = cap.maps()
    ulam = maps.r2g.ulam[0]
    assert ulam.std() > 0.01 * ulam.mean()          # meaningful: varies over the generated grid
    assert not maps.g2r.available and "single reference token" in maps.g2r.degenerate
    with pytest.warns(UserWarning, match="not available"):
        assert maps.g2r.ulam is None
    # no Lq x Lk buffer exists for one token: accumulators are [B, G, N, Lq] only
    assert all(k.startswith("r2g/") for k in maps.raw)


def test_spatial_tokens_on_an_8x6_grid(unet):
    x, ctx = inputs(1)
    maps = capture(unet, x, ctx, sram_layers=(SRAM_LAYER,)).maps()
    assert maps.g2r.ulam.shape == (1, *REF_GRID)
    assert maps.r2g.ulam.shape == (1, *LATENT)
    # G2R per layer: each step adds a distribution over the 48 tokens averaged over queries -> mass 1 per step/head
    g2r = maps.raw[f"g2r/{SRAM_LAYER}"]
    torch.testing.assert_close(g2r.sum((-1, -2)), torch.full(g2r.shape[:3], 2.0))


def test_sram_points_and_mask(unet):
    x, ctx = inputs(2)
    maps = capture(unet, x, ctx, sram_layers=(SRAM_LAYER,)).maps()
    qh, qw = maps.layer_meta(SRAM_LAYER)["query_grid"]
    full = maps.raw[f"sram/{SRAM_LAYER}"]
    got = maps.sram(SRAM_LAYER, points=[(0, 0), (qh - 1, 1)])
    assert got.shape == (2, 2, *REF_GRID)
    torch.testing.assert_close(got[:, 1].flatten(1), full[:, (qh - 1) * qw + 1])
    torch.testing.assert_close(got.sum((-1, -2)), torch.full((2, 2), 4.0))   # 4 steps of one distribution
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 32:, :16] = 1
    by_mask = maps.sram(SRAM_LAYER, mask=mask)
    points = maps.sram_points(SRAM_LAYER, mask)[0]
    assert by_mask.shape[1] == len(points) == (qh // 2) * (qw // 4)
    torch.testing.assert_close(by_mask, maps.sram(SRAM_LAYER, points=points.tolist()))
    with pytest.raises(KeyError, match="sram_layers"):
        maps.sram("down_blocks.0.attentions.0.transformer_blocks.0.attn2", points=[(0, 0)])


def test_maps_save_and_load_round_trip(unet, tmp_path):
    x, ctx = inputs(2)
    maps = capture(unet, x, ctx, sram_layers=(SRAM_LAYER,)).maps()
    loaded = AttributionMaps.load(maps.save(tmp_path / "m.safetensors"))
    assert loaded.meta == maps.meta
    torch.testing.assert_close(loaded.g2r.hlam, maps.g2r.hlam)
    torch.testing.assert_close(loaded[1].r2g.ulam, maps.r2g.ulam[1:2])
    with pytest.raises(FileNotFoundError, match="no attribution maps"):
        AttributionMaps.load(tmp_path / "missing.safetensors")


def test_family_layer_subsets_follow_the_config(unet):
    x, ctx = inputs(1)
    keys = ["up_blocks.2.attentions.0.transformer_blocks.0.attn2", SRAM_LAYER,
            "up_blocks.2.attentions.2.transformer_blocks.0.attn2"]
    maps = capture(unet, x, ctx, family_layers={"g2r": {"ulam": [SRAM_LAYER], "tlam": keys}}).maps()
    only = maps.g2r.subset([SRAM_LAYER])
    torch.testing.assert_close(maps.g2r.ulam, only.ulam)
    torch.testing.assert_close(maps.g2r.tlam, maps.g2r.subset(keys).tlam)
    assert not torch.allclose(maps.g2r.tlam, maps.g2r.subset([SRAM_LAYER]).tlam)


def test_clear_errors(unet):
    x, ctx = inputs(1)
    with pytest.raises(RuntimeError, match="beyond CaptureConfig.num_steps=2"), \
            AttributionCapture(unet, CaptureConfig(num_steps=2, time_groups=1), ref_grid=REF_GRID):
        run_steps(unet, x, ctx, 3)
    with pytest.raises(ValueError, match="unknown layer name"):
        AttributionCapture(unet, CaptureConfig(layers=["nope"]))
    with pytest.raises(RuntimeError, match="no reference grid"), \
            AttributionCapture(unet, CaptureConfig(num_steps=1, time_groups=1)):
        run_steps(unet, x, ctx, 1)
    with pytest.raises(ValueError, match="cfg_layout"):
        CaptureConfig(cfg_layout="cond_first")


def test_query_chunking_does_not_change_the_maps(unet):
    x, ctx = inputs(2, seed=6)
    whole = capture(unet, x, ctx, sram_layers=(SRAM_LAYER,)).maps()
    chunked = capture(unet, x, ctx, sram_layers=(SRAM_LAYER,), chunk_budget=2 * 4 * 48 * 5,
                      one_pass_budget=2 * 4 * 48 * 5).maps()  # 5 queries/chunk
    for key in whole.raw:
        torch.testing.assert_close(chunked.raw[key], whole.raw[key], rtol=1e-5, atol=1e-7, msg=key)


def test_family_layers_by_group_and_their_own_common_grid(unet):
    x, ctx = inputs(1)
    small = [f"up_blocks.1.attentions.{i}.transformer_blocks.0.attn2" for i in (0, 1)]
    maps = capture(unet, x, ctx, family_layers={"r2g": {"ulam": small, "llam": ["group:unet"]}}).maps()
    # ULAM over two 2x2 layers stays on their own 2x2 grid; LLAM over the group keeps every layer at 8x8
    assert maps.r2g.ulam.shape[-2:] == (2, 2)
    torch.testing.assert_close(maps.r2g.ulam, maps.r2g.subset(small).ulam)
    assert maps.r2g.llam.shape == (1, 15, *LATENT)
    with pytest.raises(KeyError, match="not captured"):
        _ = capture(unet, x, ctx, family_layers={"r2g": {"ulam": ["nope"]}}).maps().r2g


class _Layers:
    """A model offering the engine a fixed list of LayerSpecs on a UNet."""

    cfg_layout = "none"

    def __init__(self, unet, specs):
        self.step_module, self._specs = unet, specs

    def attribution_layers(self):
        return self._specs


def test_q_and_k_read_at_the_attention_backend_equal_the_projections_they_come_from(unet):
    """AttnProcessor2_0 (no q/k norms, no rotary embedding) hands its SDPA call to_q's and to_k's outputs split into
    heads: read there (LayerSpec.qk_at_backend), the same scores on the same code path (recomputed softmaxes)."""
    from dataclasses import replace

    from i2am.engine.layers import discover_cross_attention

    x, ctx = inputs(2, seed=5)
    specs = discover_cross_attention(unet, ref_grid=REF_GRID)[:3]
    cfg = CaptureConfig(num_steps=2, time_groups=1, kernel_stats=False)
    maps = {}
    for at_backend in (False, True):
        model = _Layers(unet, [replace(s, qk_at_backend=at_backend) for s in specs])
        with AttributionCapture(model, cfg) as cap:
            run_steps(unet, x, ctx, 2)
        maps[at_backend] = cap.maps()
    assert maps[True].raw.keys() == maps[False].raw.keys()
    for key, value in maps[False].raw.items():
        assert torch.equal(maps[True].raw[key], value), key
