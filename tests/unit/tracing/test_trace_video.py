"""i2am.trace on WanImageToVideoPipeline, ChronoEditPipeline and SkyReelsV2ImageToVideoPipeline (tiny Wan 2.1-style
transformers built from config)
against a naive float64 reference computed from the q and k their attention processor attends with: the CLIP image
keys of every block's attn2 (relation "image:reference") and its text keys, R2G over (frame, h, w) and G2R per
generated frame, the unconditional call of each CFG step skipped."""
from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers import transformer_chronoedit, transformer_skyreels_v2, transformer_wan
from helpers.naive_wan import BLOCKS, GRID, IMAGE_TOKENS, inputs, naive, recording

import i2am
from i2am import toy
from i2am.adapters.diffusers.video.tiny import PIPELINES, WAN_TEXT_TOKENS, build_video_pipeline
from i2am.engine import CaptureConfig
from i2am.tracing.video import wan_layer_specs

RTOL, ATOL = 1e-5, 1e-7                    # float32 capture vs float64 reference of the same q and k


# each pipeline's transformer module and its attention processor class
MODULES = {"WanImageToVideoPipeline": (transformer_wan, "WanAttnProcessor"),
           "ChronoEditPipeline": (transformer_chronoedit, "WanAttnProcessor"),
           "SkyReelsV2ImageToVideoPipeline": (transformer_skyreels_v2, "SkyReelsV2AttnProcessor")}


@pytest.fixture(scope="module", params=(*PIPELINES, "SkyReelsV2ImageToVideoPipeline"))
def pipe(request):
    pipe = build_video_pipeline(request.param) if request.param in PIPELINES else toy.pipeline(request.param)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, steps: int, **inputs):
    return pipe(num_inference_steps=steps, **inputs).frames


@pytest.mark.parametrize("relation,keys", [("image:reference", IMAGE_TOKENS), ("text", WAN_TEXT_TOKENS)])
def test_trace_equals_the_naive_reference_of_the_processors_own_q_and_k(pipe, monkeypatch, relation, keys):
    calls = recording(MODULES[type(pipe).__name__][0], monkeypatch)
    with i2am.trace(pipe) as tr:
        _run(pipe, 2, **inputs())
    maps = tr.maps.relation(relation)
    assert maps.steps == 2 and maps.frames == GRID[0]
    expected = naive(calls, keys, guided=True)
    assert sorted(expected) == list(range(BLOCKS))
    for block, (r2g, g2r) in expected.items():
        name = f"{relation}/blocks.{block}.attn2"
        torch.testing.assert_close(maps.raw[f"r2g/{name}"].sum(1).double(), r2g, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(maps.raw[f"g2r/{name}"].sum(1).double().flatten(-2), g2r, rtol=RTOL, atol=ATOL)


def _hook_count(pipe) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.transformer.modules())


def test_outputs_unchanged_and_everything_restored(pipe):
    processors = {n: m.processor for n, m in pipe.transformer.named_modules() if hasattr(m, "processor")}
    hooks = _hook_count(pipe)
    plain = _run(pipe, 2, **inputs())
    with i2am.trace(pipe) as tr:
        traced = _run(pipe, 2, **inputs())
    assert torch.equal(plain, traced)
    assert tr.maps.meta["cfg_layout"] == "separate calls: the first (cond) recorded, the uncond skipped"
    assert {n: m.processor for n, m in pipe.transformer.named_modules() if hasattr(m, "processor")} == processors
    assert _hook_count(pipe) == hooks
    assert "cache_context" not in vars(pipe.transformer) and "prepare_latents" not in vars(pipe)


def test_cfg_layouts_record_the_conditional_call_only(pipe):
    """At the first step the conditional call sees the same input with or without CFG: one step, the same maps."""
    with i2am.trace(pipe) as guided:
        _run(pipe, 1, **inputs(guided=True))
    with i2am.trace(pipe) as single:
        _run(pipe, 1, **inputs(guided=False))
    assert guided.maps.steps == single.maps.steps == 1
    assert single.maps.meta["cfg_layout"] == "chunk 0 of 1"
    assert guided.maps.raw.keys() == single.maps.raw.keys()
    for key, value in guided.maps.raw.items():
        assert torch.equal(value, single.maps.raw[key]), key


def test_batch_invariance(pipe):
    both = inputs(batch=2, guided=False)
    with i2am.trace(pipe) as tr:
        _run(pipe, 1, **both)
    batched = tr.maps
    for i in range(2):
        alone = {**both, "prompt_embeds": both["prompt_embeds"][i:i + 1], "latents": both["latents"][i:i + 1]}
        with i2am.trace(pipe) as tr:
            _run(pipe, 1, **alone)
        for key, value in tr.maps.raw.items():
            # a batch of 2 runs other GEMM blockings than a batch of 1: float32 rounding, not exact
            torch.testing.assert_close(batched.raw[key][i:i + 1], value, rtol=1e-4, atol=1e-6)


def test_sram_of_a_video_layer_is_refused(pipe):
    capture = CaptureConfig(sram_layers=["image:reference/blocks.0.attn2"])
    with pytest.raises(ValueError, match="video layer"), i2am.trace(pipe, capture):
        _run(pipe, 1, **inputs(guided=False))


def test_unsupported_transformers_are_refused_with_the_reason(pipe):
    transformer = type(pipe.transformer)
    without_image = transformer.from_config({**pipe.transformer.config, "added_kv_proj_dim": None})
    with pytest.raises(ValueError, match="input channels"):
        wan_layer_specs(without_image)

    module, processor = MODULES[type(pipe).__name__]

    class OtherProcessor(getattr(module, processor)):
        pass

    other = transformer.from_config(pipe.transformer.config)
    other.blocks[1].attn2.set_processor(OtherProcessor())
    with pytest.raises(ValueError, match=r"blocks\.1\.attn2 runs processor OtherProcessor"):
        wan_layer_specs(other)


def test_chronoedit_temporal_reasoning_that_drops_frames_mid_call_is_refused():
    from diffusers import UniPCMultistepScheduler

    pipe = build_video_pipeline("ChronoEditPipeline")
    pipe.set_progress_bar_config(disable=True)
    # temporal reasoning trims the multistep scheduler's history (model_outputs) when it drops the frames
    pipe.scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    call = {**inputs(guided=False), "latents": None, "num_frames": 9}
    with pytest.raises(ValueError, match="num_temporal_reasoning_steps=0"), i2am.trace(pipe):
        _run(pipe, 2, **call, enable_temporal_reasoning=True, num_temporal_reasoning_steps=1)
