"""i2am.trace on HunyuanVideo15ImageToVideoPipeline (the tiny build from config): the layout reader follows the
forward's per-sample repacking of the context, the maps equal a naive float64 reference of the q and k each block
attends with (both normalisations, padding keys left out as the model leaves them out), they are video maps, the
pipeline's outputs are unchanged, only the conditional call of each CFG step is recorded, and a batch gives each
sample's maps alone."""
from __future__ import annotations

import pytest
import torch
from helpers.naive_hunyuan_video15 import STREAMS, Recorder, context_positions, naive

import i2am
from i2am import toy
from i2am.adapters.diffusers.video.tiny import (
    HUNYUAN_GLYPH_DIM,
    HUNYUAN_IMAGE_DIM,
    HUNYUAN_TEXT_DIM,
    HUNYUAN_VIDEO15,
    build_hunyuan_video15,
)
from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.packing import forward_arguments, read_layout

RTOL, ATOL = 1e-5, 1e-7          # float32 capture vs float64 reference of the same q and k
GRID = (3, 3, 4)                 # 5 frames / 2 + 1 latent frames; a 32 x 48 image at target size 16 -> 12 x 16 / 4
IMAGE_TOKENS, IMAGE_GRID = 16, (4, 4)
BLOCKS = ("transformer_blocks.0.attn", "transformer_blocks.1.attn")


@pytest.fixture(scope="module")
def pipe():
    return toy.pipeline(HUNYUAN_VIDEO15)


@pytest.fixture(scope="module")
def unguided():
    pipe = build_hunyuan_video15(guidance_scale=1.0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _call(pipe, steps: int = 2, batch: int = 1, **kwargs):
    inputs = {**toy.prompt(pipe, batch=batch), **kwargs}
    return pipe(image=toy.image(32, 48), num_frames=5, num_inference_steps=steps, output_type="latent",
                generator=torch.Generator().manual_seed(0), **inputs).frames


def _relations(normalisation: str) -> list[str]:
    return [("share:" if normalisation == "share" else "") + r for r in STREAMS]


@pytest.mark.parametrize("chunk_budget", [None, 200], ids=["one-chunk", "chunks-across-frames"])
@pytest.mark.parametrize("kernel_stats", [True, False], ids=["kernel-lse", "recomputed"])
@pytest.mark.parametrize("normalisation", ["i2am", "share"])
def test_trace_equals_the_naive_reference_of_the_blocks_q_and_k(pipe, normalisation, kernel_stats, chunk_budget):
    """chunk_budget 200: 1 to 3 generated queries per chunk (2 samples x 2 heads x the keys), so chunks cut across
    the 12-cell frames."""
    budget = {} if chunk_budget is None else {"chunk_budget": chunk_budget, "one_pass_budget": chunk_budget}
    with Recorder(pipe.transformer) as recorder, \
            i2am.trace(pipe, CaptureConfig(kernel_stats=kernel_stats, **budget)) as tr:
        _call(pipe, batch=2)
    assert len(recorder.calls) == 4                     # 2 steps x (conditional, unconditional)
    conditional = recorder.calls[::2]
    maps = tr.maps
    assert maps.steps == 2 and maps.frames == GRID[0]
    assert maps.meta["stats_path"] == ("kernel-lse" if kernel_stats else "recomputed")
    for relation, stream in zip(_relations(normalisation), STREAMS):
        expected = naive(conditional, stream, share=normalisation == "share")
        for block, (r2g, g2r) in expected.items():
            name = f"{relation}/{BLOCKS[block]}"
            torch.testing.assert_close(maps.raw[f"r2g/{name}"].sum(1).double(), r2g, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(maps.raw[f"g2r/{name}"].sum(1).double().flatten(-2), g2r, rtol=RTOL,
                                       atol=ATOL)


def test_padding_keys_are_left_out(pipe):
    with Recorder(pipe.transformer) as recorder, i2am.trace(pipe) as tr:
        _call(pipe, batch=2)
    conditional = recorder.calls[::2]
    masks = conditional[0]["masks"]
    for relation in ("text", "text:glyph"):
        assert bool((~masks[relation]).any(1).all())     # every sample has padding in both streams
        maps = tr.maps.relation(relation)
        g2r = maps.raw[f"g2r/{relation}/{BLOCKS[0]}"].sum(1).flatten(-2)   # [B, heads, F, tokens]
        assert torch.all(g2r[~masks[relation][:, None, None, :].expand_as(g2r)] == 0)
        # per step and frame, the mass over the valid tokens is 1: none of it went to the padding
        torch.testing.assert_close(g2r.sum(-1), torch.full(g2r.shape[:-1], 2.0), rtol=RTOL, atol=1e-6)
        # a reference that keeps the padding keys (as a capture ignoring the mask would) differs
        r2g_with_padding = naive(conditional, relation, with_padding=True)[0][0]
        assert not torch.allclose(maps.raw[f"r2g/{relation}/{BLOCKS[0]}"].sum(1).double(), r2g_with_padding,
                                  rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("text_to_video", [False, True], ids=["image", "all-zero image"])
def test_layout_reader_follows_the_forwards_repacking(pipe, text_to_video):
    """The positions the reader gives each token are where the forward puts it: the context entering the first
    block holds each valid token's embedding (plus its stream's type embedding) there, and zeros at the padding.
    All-zero image tokens (the forward's text-to-video case) are padding, after every valid token."""
    transformer = pipe.transformer
    seen = {}
    handles = [transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.__setitem__("layout", read_layout(module, forward_arguments(
            module, args, kwargs))), with_kwargs=True),
        transformer.transformer_blocks[0].register_forward_pre_hook(
            lambda module, args: seen.__setitem__("context", args[1]))]
    for name in ("image_embedder", "context_embedder", "context_embedder_2"):
        handles.append(getattr(transformer, name).register_forward_hook(
            lambda module, args, out, name=name: seen.__setitem__(name, out)))
    g = torch.Generator().manual_seed(1)
    text = torch.tensor([[1] * 6 + [0], [1] * 3 + [0] * 4])
    glyph = torch.tensor([[1] * 2 + [0] * 4, [1] * 5 + [0]])
    try:
        with torch.no_grad():
            transformer(hidden_states=torch.randn(2, 9, *GRID, generator=g), timestep=torch.full((2,), 500.0),
                        encoder_hidden_states=torch.randn(2, 7, HUNYUAN_TEXT_DIM, generator=g),
                        encoder_attention_mask=text,
                        encoder_hidden_states_2=torch.randn(2, 6, HUNYUAN_GLYPH_DIM, generator=g),
                        encoder_attention_mask_2=glyph,
                        image_embeds=torch.randn(2, IMAGE_TOKENS, HUNYUAN_IMAGE_DIM, generator=g)
                        * (0 if text_to_video else 1))
    finally:
        for handle in handles:
            handle.remove()
    layout, context = seen["layout"], seen["context"]
    video = GRID[0] * GRID[1] * GRID[2]
    assert layout.length == video + context.shape[1] and layout.generated.frames == GRID[0]
    segments = {s.relation: s for s in layout.keys}
    if text_to_video:
        assert "image:reference" not in segments and [s.kind for s in layout.segments].count("padding") == 1
    else:
        assert segments["image:reference"].start == video and segments["image:reference"].grid == IMAGE_GRID
    image_mask = torch.full((2, IMAGE_TOKENS), not text_to_video)
    kind = transformer.cond_type_embed.weight     # rows: 0 text, 1 glyph, 2 image
    for relation, embedder, row, mask in (("text", "context_embedder", 0, text),
                                          ("text:glyph", "context_embedder_2", 1, glyph)):
        positions = segments[relation].positions
        for b in range(2):
            assert list(positions[b]) == context_positions({"image:reference": image_mask, "text:glyph": glyph,
                                                            "text": text}, b, video)[relation]
            at = torch.tensor(positions[b]) - video
            valid = mask[b].bool()
            # the same additions on the same tensors as the forward: exact
            assert torch.equal(context[b, at[valid]], seen[embedder][b, valid] + kind[row])
            assert torch.all(context[b, at[~valid]] == 0)


@pytest.mark.parametrize("kernel_stats", [True, False], ids=["kernel-lse", "recomputed"])
def test_a_sample_without_glyph_tokens_has_zero_glyph_maps(unguided, kernel_stats):
    prompt = toy.prompt(unguided, batch=2)
    prompt["prompt_embeds_mask_2"] = prompt["prompt_embeds_mask_2"] * torch.tensor([[0], [1]])
    with Recorder(unguided.transformer) as recorder, \
            i2am.trace(unguided, CaptureConfig(kernel_stats=kernel_stats)) as tr:
        _call(unguided, steps=1, **prompt)
    for relation in ("text:glyph", "share:text:glyph"):
        expected = naive(recorder.calls, "text:glyph", share=relation.startswith("share"))
        for block, (r2g, g2r) in expected.items():
            name = f"{relation}/{BLOCKS[block]}"
            got_r2g, got_g2r = tr.maps.raw[f"r2g/{name}"].sum(1), tr.maps.raw[f"g2r/{name}"].sum(1).flatten(-2)
            assert torch.all(got_r2g[0] == 0) and torch.all(got_g2r[0] == 0)
            assert bool((got_r2g[1] > 0).all())
            torch.testing.assert_close(got_r2g.double(), r2g, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(got_g2r.double(), g2r, rtol=RTOL, atol=ATOL)


def test_glyph_relation_absent_when_no_sample_has_glyph_tokens(unguided):
    prompt = toy.prompt(unguided)
    prompt["prompt_embeds_mask_2"] = torch.zeros_like(prompt["prompt_embeds_mask_2"])
    with i2am.trace(unguided) as tr:
        _call(unguided, steps=1, **prompt)
    assert set(tr.maps.relations) == {"image:reference", "text", "share:image:reference", "share:text"}
    assert [s["kind"] for s in tr.maps.meta["segments"]] == ["generated", "reference", "padding", "text"]


def test_video_maps(pipe):
    with i2am.trace(pipe) as tr:
        _call(pipe)
    maps = tr.maps.relation("image:reference")
    assert maps.frames == GRID[0] and maps.meta["video"] == {"temporal_ratio": 2, "spatial_ratio": 4}
    assert all(layer["query_grid"] == list(GRID) for layer in maps.meta["layers"])
    assert tuple(maps.r2g.ulam.shape) == (1, *GRID) and tuple(maps.g2r.ulam.shape) == (1, GRID[0], *IMAGE_GRID)
    torch.testing.assert_close(maps.r2g.frame_mass().sum(-1), torch.ones(1), rtol=RTOL, atol=1e-6)
    torch.testing.assert_close(maps.g2r.distribution("ulam").sum((-2, -1)), torch.ones(1, GRID[0]), rtol=RTOL,
                               atol=1e-6)
    vision = pipe.image_encoder.config    # SigLIP's patch grid, row-major
    assert IMAGE_GRID == (vision.image_size // vision.patch_size,) * 2


def _hook_count(pipe) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.transformer.modules())


def test_outputs_unchanged_and_everything_restored(pipe):
    from diffusers.models.transformers import transformer_hunyuan_video15 as module

    processors = {n: m.processor for n, m in pipe.transformer.named_modules() if hasattr(m, "processor")}
    hooks, dispatch = _hook_count(pipe), module.dispatch_attention_fn
    plain = _call(pipe, batch=2)
    with i2am.trace(pipe) as tr:
        traced = _call(pipe, batch=2)
    assert torch.equal(plain, traced)
    assert tr.maps.meta["cfg_layout"] == "separate calls: the first (cond) recorded, the uncond skipped"
    assert {n: m.processor for n, m in pipe.transformer.named_modules() if hasattr(m, "processor")} == processors
    assert _hook_count(pipe) == hooks and module.dispatch_attention_fn is dispatch
    assert "prepare_latents" not in vars(pipe)


def test_only_the_conditional_call_is_recorded(pipe, unguided):
    """At the first step the conditional call sees the same input with or without CFG: one step, the same maps."""
    with i2am.trace(pipe) as guided:
        _call(pipe, steps=1)
    with i2am.trace(unguided) as single:
        _call(unguided, steps=1)
    assert guided.maps.steps == single.maps.steps == 1
    assert single.maps.meta["cfg_layout"] == "chunk 0 of 1"
    assert guided.maps.raw.keys() == single.maps.raw.keys()
    for key, value in guided.maps.raw.items():
        assert torch.equal(value, single.maps.raw[key]), key


def test_batch_invariance(unguided):
    both = toy.prompt(unguided, batch=2)
    latents = torch.randn(2, 4, *GRID, generator=torch.Generator().manual_seed(3))
    with i2am.trace(unguided) as tr:
        _call(unguided, steps=1, **both, latents=latents)
    batched = tr.maps
    for i in range(2):
        alone = {key: value[i:i + 1] for key, value in both.items()}
        with i2am.trace(unguided) as tr:
            _call(unguided, steps=1, **alone, latents=latents[i:i + 1])
        assert tr.maps.raw.keys() == batched.raw.keys()
        for key, value in tr.maps.raw.items():
            # a batch of 2 runs other GEMM blockings than a batch of 1: float32 rounding, not exact
            torch.testing.assert_close(batched.raw[key][i:i + 1], value, rtol=1e-4, atol=1e-6)


def test_image_only_options_are_refused_for_video(unguided):
    with pytest.raises(ValueError, match="video"), i2am.trace(unguided, CaptureConfig(sram_layers=[BLOCKS[0]])):
        _call(unguided, steps=1)
    with pytest.raises(ValueError, match="per-sample positions"), \
            JointAttentionCapture(unguided.transformer, CaptureConfig(num_steps=1), routes=("twohop",)):
        _call(unguided, steps=1)
    with pytest.raises(ValueError, match="per-sample positions"), \
            JointTokenKnockout(unguided.transformer, relation="text") as knockout:
        knockout.set_keep(lambda grid: torch.zeros(1, grid[0] * grid[1]))
        _call(unguided, steps=1)
