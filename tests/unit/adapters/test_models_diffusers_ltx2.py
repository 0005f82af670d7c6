"""model=diffusers for LTX-2 image-to-video (a tiny LTX2ImageToVideoPipeline with its audio stream): the adapter's
capture against i2am.trace on the same pipeline call, the reference-frame knockout against a naive masked attention,
the attribute loop end to end (video maps saved, faithfulness in mode full and randomisation finite) and what is
refused or left out."""
from __future__ import annotations

import json

import pytest
import torch
from diffusers.models.transformers.transformer_ltx2 import apply_split_rotary_emb
from helpers.tasks_util import compose_task, run_task
from helpers.video_adapters import RTOL, VIDEO_CHECKS, attribute_overrides, capture_and_trace, video_batch

from i2am.adapters import create_model
from i2am.app.evaluator_fit import check_evaluators
from i2am.engine import AttributionMaps
from i2am.engine.frame_knockout import ReferenceFrameKnockout
from i2am.sampling.sampler import Sampler

PIPELINE = "LTX2ImageToVideoPipeline"
SIZE = (32, 64)                            # 16 x 32 cells per latent frame (VAE / 2, patch 1)
FRAMES = 5                                 # 3 latent frames: the reference and 2 generated
CELLS = 16 * 32


def batch(n=1, seed=0):
    return video_batch(SIZE, n, seed)


@pytest.fixture(scope="module")
def adapter():
    return create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=FRAMES, num_steps=2)


@pytest.mark.parametrize("relation, guidance", [("image:reference", None), ("text", None), ("image:reference", 1.0)])
def test_capture_equals_the_trace_of_the_same_pipeline_call(relation, guidance):
    """The adapter's records_call (set from each call's arguments before the capture reads it) and the trace pick
    the same unperturbed call per step and read the same q and k (its positive rows under CFG, every row at guidance
    1): the maps agree, the generated frames are 1..F-1."""
    model = create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=FRAMES, num_steps=2,
                         relation=relation, guidance=guidance)
    ours, theirs = capture_and_trace(model, relation, SIZE)
    assert ours.frames == theirs.frames == 2 and ours.meta["video"] == theirs.meta["video"]
    assert ours.meta["steps_seen"] == 2
    assert ours.meta["cfg_layout"] == ("none" if guidance == 1.0 else "uncond_cond")


def naive_attn1(attn, hidden_states, rotary, keep):
    """LTX-2's video self-attention with the attention itself in float64: q and k through the layer's own norms and
    rotary embedding (float32, as the processor computes them), the generated frames' logits to the reference
    frame's removed keys set to -inf."""
    heads = lambda x: x.unflatten(2, (attn.heads, -1)).transpose(1, 2).double()
    q = heads(apply_split_rotary_emb(attn.norm_q(attn.to_q(hidden_states)), rotary))
    k = heads(apply_split_rotary_emb(attn.norm_k(attn.to_k(hidden_states)), rotary))
    v = heads(attn.to_v(hidden_states))
    allowed = torch.ones(q.shape[0], 1, q.shape[2], k.shape[2], dtype=torch.bool)
    allowed[:, 0, CELLS:, :CELLS] = keep[:, None, :]
    logits = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).masked_fill(~allowed, float("-inf"))
    out = (torch.softmax(logits, -1) @ v).transpose(1, 2).flatten(2)
    return out @ attn.to_out[0].weight.double().T + attn.to_out[0].bias.double()


def test_knockout_equals_masked_attention_and_removes_nothing_when_all_kept(adapter):
    """Block 0's attn1 in the first transformer call (CFG rows [negative, positive], both masked) equals the naive
    masked attention of its recorded inputs; keeping every token runs the original call (bit-identical latents)."""
    calls = []

    def record(module, args, kwargs, output):
        calls.append((kwargs["hidden_states"], kwargs["query_rotary_emb"], output))

    sampler = Sampler(num_steps=1, seed=2)
    plain = adapter.sample(batch(), sampler)["latents"]
    keep = torch.rand(1, CELLS, generator=torch.Generator().manual_seed(1)) > 0.5
    attn = adapter.transformer.transformer_blocks[0].attn1
    with ReferenceFrameKnockout(adapter.transformer) as knockout:
        knockout.set_keep(lambda grid: torch.ones(1, grid[0] * grid[1], dtype=torch.bool))
        kept = adapter.sample(batch(), sampler)["latents"]
        knockout.set_keep(lambda grid: keep)
        handle = attn.register_forward_hook(record, with_kwargs=True)
        removed = adapter.sample(batch(), sampler)["latents"]
        handle.remove()
    assert torch.equal(kept, plain)                           # nothing removed: the original arguments
    assert not torch.equal(removed, plain)
    hidden, rotary, output = calls[0]
    assert hidden.shape[0] == 2                               # [negative, positive]
    with torch.no_grad():
        expected = naive_attn1(attn, hidden, rotary, keep.expand(2, -1))
    torch.testing.assert_close(output.double(), expected, rtol=RTOL, atol=1e-6)   # float32 vs float64 attention
    assert torch.equal(adapter.sample(batch(), sampler)["latents"], plain)         # restored on exit


def test_step_callback_and_refusals(adapter):
    """The step callback's latents are the unpacked [B, C, F, h, w] ones; the reference frame does not move."""
    points = []
    out = adapter.sample(batch(), Sampler(num_steps=2, seed=1), callback=points.append)
    assert tuple(out["latents"].shape) == (1, 4, 3, 16, 32) and tuple(out["images"].shape) == (1, 3, 5, *SIZE)
    assert len(points) == 2 and torch.equal(points[-1]["x_next"], out["latents"])
    assert all(torch.equal(p["eps"][:, :, 0], torch.zeros_like(p["eps"][:, :, 0])) for p in points)
    with pytest.raises(NotImplementedError, match="evaluators.faithfulness.modes=\\[full\\]"):
        adapter.predict_x0(points[0]["x"], points[0]["t"], adapter.prepare(batch()))
    with pytest.raises(ValueError, match="data.batch_size=1"):
        adapter.sample(batch(2), Sampler(num_steps=1))
    with pytest.raises(ValueError, match="model.num_frames=4"):
        create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=4)
    with pytest.raises(ValueError, match="not video self-attention layers"):
        ReferenceFrameKnockout(adapter.transformer, layers=["text/transformer_blocks.0.attn2"])
    assert [s.name for s in ReferenceFrameKnockout(adapter.transformer, layers=["transformer_blocks.1.attn1"]).layers] \
        == ["image:reference/transformer_blocks.1.attn1"]


def _overrides(tmp_path, *extra):
    return attribute_overrides(tmp_path, f"model.pipeline={PIPELINE}", "model.image_size=[32,64]", *extra)


CHECKS = VIDEO_CHECKS


def test_attribute_saves_video_maps_and_the_video_evaluators_run(tmp_path):
    _, notes = check_evaluators(compose_task("attribute", _overrides(tmp_path, *CHECKS)))
    assert any("mode proxy left out" in n for n in notes)
    metrics = run_task("attribute", _overrides(tmp_path, *CHECKS))
    run = tmp_path / "run"
    assert metrics["n_samples"] == 2
    for key in ("faith_full_latent_del_auc", "faith_full_pixel_del_gap", "r2g_cf_swap_spearman",
                "r2g_cf_null_change", "rand_r2g_spearman_cascade_final", "rand_g2r_spearman_cascade_final"):
        assert metrics[key] == metrics[key] and abs(metrics[key]) < float("inf"), key
    assert not any(key.startswith("faith_proxy") for key in metrics)
    assert metrics["r2g_cf_null_change"] > 0                  # removing every reference token changes the video
    saved = json.loads(next(run.glob("per_sample/*/faithfulness.json")).read_text())
    assert saved["g2r"]["removal"] == "knockout"
    for path in sorted(run.glob("maps/*.safetensors")):
        maps = AttributionMaps.load(path)
        assert maps.frames == 2 and tuple(maps.r2g.ulam.shape) == (1, 2, 16, 32)   # generated latent frames 1, 2
        assert tuple(maps.g2r.ulam.shape) == (1, 2, 16, 32)                      # per frame, over the reference's


def test_cell_change_of_maps_from_the_first_generated_frame():
    """LTX-2's maps cover latent frames 1..F-1: their change skips video frame 0 (the reference)."""
    from i2am.evaluation.faithfulness import cell_change

    video = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 3, 5, 4, 6).clone()   # frame t changed by t
    change = cell_change(video, torch.zeros(1, 3, 5, 4, 6), (2, 2, 3), temporal_ratio=2, first_frame=1)
    assert change.shape == (1, 2, 2, 3)
    assert torch.equal(change[0, :, 0, 0], torch.tensor([1.5, 3.5]))               # means of frames 1-2 | 3-4
    with pytest.raises(ValueError, match="not 3 latent frames"):
        cell_change(video, torch.zeros(1, 3, 5, 4, 6), (2, 2, 3), temporal_ratio=4, first_frame=1)
