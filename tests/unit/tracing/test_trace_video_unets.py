"""i2am.trace on the image-to-video UNet pipelines that fold the frames into the batch (Stable Video Diffusion,
I2VGen-XL; tiny builds from config) against a naive float64 reference recomputed from each spatial cross-attention's
own projection weights: every family of every relation as a video map (R2G over (frame, h, w), G2R per generated
frame), outputs bit-identical, everything restored, the conditional CFG chunk, batch invariance, and what cannot be
attributed (SVD's single CLIP token: G2R identically 1)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

import i2am
from i2am import toy
from i2am.adapters.diffusers.coverage import CLI, COVERAGE, TRACE
from i2am.engine import AttributionMaps, CaptureConfig

FRAMES, STEPS = 3, 2
SVD_SIZE, I2VGEN_SIZE = 32, 64            # latent grids 16 x 16 (VAE factor 2) and 8 x 8 (factor 8)
PROMPT_TOKENS = 7
I2VGEN_PARTS = {"text": (0, PROMPT_TOKENS), "image:reference": (PROMPT_TOKENS, PROMPT_TOKENS + 64),
                "image:clip": (PROMPT_TOKENS + 64, PROMPT_TOKENS + 68)}   # 8 x 8 latent tokens, in_channels=4 CLIP
RTOL, ATOL = 1e-5, 1e-7                   # float32 capture vs float64 reference of the same weights and inputs


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def svd():
    return toy.pipeline("StableVideoDiffusionPipeline")


@pytest.fixture(scope="module")
def i2vgen():
    return toy.pipeline("I2VGenXLPipeline")


def _svd_call(batch=1, seed=0, guided=True):
    images = [toy.image(SVD_SIZE, SVD_SIZE, seed=seed + i) for i in range(batch)]
    return dict(image=images if batch > 1 else images[0], height=SVD_SIZE, width=SVD_SIZE, num_frames=FRAMES,
                num_inference_steps=STEPS, output_type="latent", max_guidance_scale=3.0 if guided else 1.0,
                generator=[_gen(seed + i) for i in range(batch)] if batch > 1 else _gen(seed))


def _i2vgen_call(batch=1, seed=0, guided=True):
    g = _gen(100 + seed)
    kw = {"prompt_embeds": torch.randn(batch, PROMPT_TOKENS, 32, generator=g),
          "negative_prompt_embeds": torch.randn(batch, PROMPT_TOKENS, 32, generator=g)}
    images = [toy.image(I2VGEN_SIZE, I2VGEN_SIZE, seed=seed + i) for i in range(batch)]
    return dict(kw, image=images if batch > 1 else images[0], height=I2VGEN_SIZE, width=I2VGEN_SIZE,
                num_frames=FRAMES, num_inference_steps=STEPS, output_type="latent",
                guidance_scale=6.0 if guided else 1.0,
                generator=[_gen(seed + i) for i in range(batch)] if batch > 1 else _gen(seed))


def _run(pipe, kwargs):
    """One call; the global RNG seeded, since I2VGen-XL samples its reference's VAE latent without a generator."""
    torch.manual_seed(0)
    return pipe(**kwargs).frames


def _spatial_cross_attention(unet):
    """The spatial attn2 layers, stated here independently of the trace: temporal blocks are left out."""
    return {n: m for n, m in unet.named_modules() if isinstance(m, Attention) and m.is_cross_attention
            and ".transformer_blocks." in n and "temp" not in n and not n.startswith("mid_block")}


def _linear(x, layer):
    return F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())


def _naive(pipe, run, parts, chunk, chunks):
    """Run ``run()`` with float64 recording hooks; -> {relation: {layer: [(r2g [B, N, F, Lq], g2r [B, N, F, Lk])
    per step]}} of the conditional chunk, frames unfolded."""
    out, handles = {}, []

    def hook_for(name, attn):
        def hook(module, args, kwargs):
            hidden, context = args[0], kwargs["encoder_hidden_states"]
            rows, heads = hidden.shape[0], attn.heads
            q = _linear(hidden, attn.to_q).reshape(rows, hidden.shape[1], heads, -1).transpose(1, 2)
            k = _linear(context, attn.to_k).reshape(rows, context.shape[1], heads, -1).transpose(1, 2)
            logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5           # [rows, N, Lq, Lk]
            logits = logits.chunk(chunks)[chunk]
            video = logits.reshape(-1, FRAMES, *logits.shape[1:]).transpose(1, 2)   # [B, N, F, Lq, Lk]
            for relation, (start, stop) in parts.items():
                part = video[..., start:stop]
                b, n, f, lq, lk = part.shape
                r2g = torch.softmax(part.reshape(b, n, f * lq, lk), dim=-2).mean(-1).reshape(b, n, f, lq)
                g2r = torch.softmax(part, dim=-1).mean(-2)
                out.setdefault(relation, {}).setdefault(name, []).append((r2g, g2r))
        return hook

    for name, attn in _spatial_cross_attention(pipe.unet).items():
        handles.append(attn.register_forward_pre_hook(hook_for(name, attn), with_kwargs=True))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return out


def _families(per_layer, index, groups):
    """ULAM / TLAM / HLAM / LLAM of one direction (every layer on one grid, so no resize) from the naive steps."""
    sums = torch.stack([torch.stack([s[index] for s in steps]).sum(0) for steps in per_layer.values()])
    tlam = []
    for g in range(groups):
        tlam.append(torch.stack([torch.stack([s[index] for i, s in enumerate(steps) if i * groups // STEPS == g])
                                 .sum(0) for steps in per_layer.values()]).mean((0, 2)))
    return {"ulam": sums.mean((0, 2)), "llam": sums.mean(2).transpose(0, 1), "hlam": sums.mean(0),
            "tlam": torch.stack(tlam, 1)}


def _assert_equals_naive(maps, naive, grid):
    for relation, per_layer in naive.items():
        sub = maps.relation(relation)
        assert [m["name"].split("/", 1)[1] for m in sub.meta["layers"]] == list(per_layer)
        assert all(m["query_grid"] == [FRAMES, *grid] for m in sub.meta["layers"])
        directions = [("r2g", 0)] + ([("g2r", 1)] if sub.g2r.available else [])
        for direction, index in directions:
            expected = _families(per_layer, index, maps.meta["time_groups"])
            got = getattr(sub, direction)
            for family, value in expected.items():
                shape = getattr(got, family).shape
                torch.testing.assert_close(getattr(got, family).double(), value.reshape(shape), rtol=RTOL, atol=ATOL,
                                           msg=f"{relation} {direction} {family}")


CASES = {"svd": ("svd", _svd_call, {"image:clip": (0, 1)}, (SVD_SIZE // 2,) * 2),
         "i2vgen": ("i2vgen", _i2vgen_call, I2VGEN_PARTS, (I2VGEN_SIZE // 8,) * 2)}


@pytest.mark.parametrize("case", list(CASES))
def test_every_family_of_every_relation_equals_the_naive_video_reference(case, request):
    fixture, call, parts, grid = CASES[case]
    pipe = request.getfixturevalue(fixture)
    plain = _run(pipe, call())
    traced = {}
    with i2am.trace(pipe, CaptureConfig(time_groups=2, directions=("r2g", "g2r"))) as tr:
        naive = _naive(pipe, lambda: traced.update(frames=_run(pipe, call())), parts, chunk=1, chunks=2)
    assert torch.equal(plain, traced["frames"])                    # outputs bit-identical under the trace
    maps = tr.maps
    assert maps.relations == list(parts)
    assert maps.frames == FRAMES and maps.meta["cfg_layout"] == "chunk 1 of 2"
    assert maps.meta["steps_seen"] == STEPS
    _assert_equals_naive(maps, naive, grid)
    r2g = maps.relation(next(iter(parts))).r2g
    torch.testing.assert_close(r2g.frame_mass("ulam").sum(-1), torch.ones(1), rtol=1e-5, atol=0)   # over the video


def test_svd_reference_is_one_clip_token_so_g2r_is_refused_with_the_reason(svd):
    with i2am.trace(svd, CaptureConfig(directions=("r2g", "g2r"))) as tr:
        svd(**_svd_call())
    maps = tr.maps
    assert maps.relations == ["image:clip"]
    assert all(m["ref_grid"] == [1, 1] and m["degenerate_g2r"] for m in maps.meta["layers"])
    assert not maps.g2r.available
    assert "single reference token" in maps.g2r.degenerate and "identically 1" in maps.g2r.degenerate
    assert not any("temporal" in name for name in tr.layers)


def test_i2vgen_context_splits_into_text_reference_grid_and_clip_tokens(i2vgen):
    with i2am.trace(i2vgen) as tr:
        i2vgen(**_i2vgen_call())
    grids = {m["relation"]: m["ref_grid"] for m in tr.maps.meta["layers"]}
    assert grids == {"text": [1, PROMPT_TOKENS], "image:reference": [8, 8], "image:clip": [1, 4]}
    assert not any("temp_attentions" in name for name in tr.layers)


@pytest.mark.parametrize("case", list(CASES))
def test_without_cfg_every_row_is_conditional_and_the_wrong_chunk_would_differ(case, request):
    fixture, call, parts, grid = CASES[case]
    pipe = request.getfixturevalue(fixture)
    with i2am.trace(pipe) as tr:
        naive = _naive(pipe, lambda: _run(pipe, call(guided=False)), parts, chunk=0, chunks=1)
    assert tr.maps.meta["cfg_layout"] == "chunk 0 of 1"
    _assert_equals_naive(tr.maps, naive, grid)
    relation = next(iter(parts))
    with i2am.trace(pipe) as tr:
        wrong = _naive(pipe, lambda: _run(pipe, call()), parts, chunk=0, chunks=2)   # the unconditional chunk
    got = tr.maps.relation(relation).r2g.ulam.double()
    assert not torch.allclose(got, _families(wrong[relation], 0, 1)["ulam"].reshape(got.shape), rtol=1e-3)


def _processors(pipe):
    return dict(pipe.unet.attn_processors)


def _hook_count(pipe):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules())


def test_everything_is_restored_after_the_call_and_after_an_exception(svd):
    before, hooks = _processors(svd), _hook_count(svd)
    with i2am.trace(svd):
        svd(**_svd_call())
        inner = _processors(svd)
    assert any(inner[n] is not before[n] for n in before)            # the capture was installed
    assert _processors(svd) == before and _hook_count(svd) == hooks and "prepare_latents" not in vars(svd)

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), i2am.trace(svd):
        svd(**_svd_call(), callback_on_step_end=fail)
    assert _processors(svd) == before and _hook_count(svd) == hooks and "prepare_latents" not in vars(svd)


@pytest.mark.numeric
@pytest.mark.parametrize("case", list(CASES))
def test_a_batch_of_two_equals_two_batches_of_one(case, request, monkeypatch):
    fixture, call, *_ = CASES[case]
    pipe = request.getfixturevalue(fixture)
    # I2VGen-XL samples its reference latent from the global RNG, one draw for the whole batch: its mode instead,
    # so that a sample's inputs do not depend on the batch it is in
    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    with i2am.trace(pipe) as tr:
        _run(pipe, call(batch=2))
    parts = []
    for i in range(2):
        single = call(batch=2)
        single["image"] = single["image"][i]
        single["generator"] = _gen(i)
        for key in ("prompt_embeds", "negative_prompt_embeds"):
            if key in single:
                single[key] = single[key][i:i + 1]
        with i2am.trace(pipe) as tr_i:
            _run(pipe, single)
        parts.append(tr_i.maps)
    joined = AttributionMaps.concat(parts)
    assert tr.maps.raw.keys() == joined.raw.keys()
    for key in tr.maps.raw:   # tolerance: batched and single convolutions may sum in another order
        torch.testing.assert_close(tr.maps.raw[key], joined.raw[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("case", list(CASES))
def test_the_coverage_table_lists_the_relations_the_trace_finds(case, request):
    fixture = CASES[case][0]
    pipe = request.getfixturevalue(fixture)
    entry = COVERAGE[type(pipe).__name__]
    assert entry.supported and entry.entry_points == (TRACE, CLI)   # both also run under model=diffusers
    assert i2am.trace(pipe).relations == list(entry.relations)
