"""i2am.trace on SkyReelsV2ImageToVideoPipeline, whose transformer is Wan 2.1's (tiny build from config in
``i2am.toy``): against a naive float64 reference of the q and k its attention processor attends with (CLIP image keys
as "image:reference", text keys), R2G over (frame, h, w) and G2R per generated frame, the unconditional call of each
CFG step skipped; outputs unchanged, everything restored, batch invariance."""
from __future__ import annotations

import pytest
import torch
from diffusers.models.transformers import transformer_skyreels_v2
from helpers.naive_wan import BLOCKS, GRID, IMAGE_TOKENS, inputs, naive, recording

import i2am
from i2am import toy
from i2am.adapters.diffusers.coverage import COVERAGE, TRACE
from i2am.adapters.diffusers.video.tiny import WAN_TEXT_TOKENS

RTOL, ATOL = 1e-5, 1e-7                    # float32 capture vs float64 reference of the same q and k


@pytest.fixture(scope="module")
def pipe():
    return toy.pipeline("SkyReelsV2ImageToVideoPipeline")


def _run(pipe, steps: int, **kwargs):
    return pipe(num_inference_steps=steps, **kwargs).frames


@pytest.mark.parametrize("relation,keys", [("image:reference", IMAGE_TOKENS), ("text", WAN_TEXT_TOKENS)])
def test_trace_equals_the_naive_reference_of_the_processors_own_q_and_k(pipe, monkeypatch, relation, keys):
    calls = recording(transformer_skyreels_v2, monkeypatch)
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
    for key, value in guided.maps.raw.items():
        assert torch.equal(value, single.maps.raw[key]), key


@pytest.mark.numeric
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


def test_the_coverage_table_lists_the_relations_the_trace_finds(pipe):
    entry = COVERAGE["SkyReelsV2ImageToVideoPipeline"]
    assert entry.supported and entry.entry_points == (TRACE,)
    assert i2am.trace(pipe).relations == list(entry.relations)
