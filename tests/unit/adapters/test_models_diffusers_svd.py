"""model=diffusers for Stable Video Diffusion (tiny, from config), whose UNet folds the frames into the batch and whose
cross-attention reads one token (the reference's CLIP embedding): the adapter's capture against i2am.trace on the
same pipeline call (R2G only), the knockout of that token on (chunk, sample, frame) rows, the attribute loop end to
end (R2G counterfactuals and randomisation; no G2R curves) and the refusals."""
from __future__ import annotations

import json

import pytest
import torch
from helpers.tasks_util import run_task
from helpers.video_adapters import VIDEO_CHECKS, attribute_overrides, capture_and_trace, video_batch

from i2am.adapters import create_model
from i2am.engine import AttributionMaps
from i2am.sampling.sampler import Sampler

PIPELINE = "StableVideoDiffusionPipeline"
SIZE, FRAMES = (32, 48), 3                 # latent 16 x 24 per frame (VAE factor 2)


def batch(n=1, seed=0):
    return video_batch(SIZE, n, seed)


@pytest.fixture(scope="module")
def adapter():
    return create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_steps=2, num_frames=FRAMES)


def test_capture_equals_the_trace_of_the_same_pipeline_call(adapter):
    ours, theirs = capture_and_trace(adapter, "image:clip", SIZE)
    assert ours.frames == theirs.frames == FRAMES and ours.meta["video"] == {"temporal_ratio": 1, "spatial_ratio": 2}
    assert not ours.g2r.available                                                          # one token: R2G only
    assert tuple(ours.r2g.ulam.shape) == (1, FRAMES, 16, 24)


@pytest.mark.parametrize("samples", [1, 2])
def test_knocking_out_the_clip_token_leaves_the_output_bias_in_the_positive_chunk(adapter, samples):
    """With the one token removed a positive-chunk row attends to nothing: the layer outputs its output projection's
    bias; the negative chunk's rows and the samples that keep the token are the layer's own."""
    attn = adapter.attribution_layers()[0].module
    g = torch.Generator().manual_seed(1)
    rows = 2 * samples * FRAMES
    hidden = torch.randn(rows, 12, attn.inner_dim, generator=g)
    context = torch.randn(samples, 1, attn.cross_attention_dim, generator=g)
    context = context.repeat_interleave(FRAMES, 0).repeat(2, 1, 1)   # one context per sample, over its frames
    keep = torch.zeros(samples, 1, dtype=torch.bool)
    keep[1:] = True                                           # the second sample keeps its token
    adapter.pipe._guidance_scale = 3.0                        # the call's CFG, as the pipeline sets it
    with torch.no_grad():
        plain = attn(hidden, context)
        with adapter.token_knockout() as knockout:
            knockout.set_keep(lambda grid: keep)
            removed = attn(hidden, context)
    removed_rows = torch.zeros(rows, dtype=torch.bool)
    removed_rows[rows // 2:rows // 2 + FRAMES] = True         # positive chunk, first sample, its frames
    assert torch.equal(removed[removed_rows], attn.to_out[0].bias.expand_as(removed[removed_rows]))
    torch.testing.assert_close(removed[~removed_rows], plain[~removed_rows], rtol=1e-5, atol=1e-6)  # eager vs SDPA


def test_refusals_name_the_reason_and_the_fix(adapter):
    with pytest.raises(NotImplementedError, match="no G2R map"):
        adapter.predict_x0(torch.zeros(1, FRAMES, 4, 16, 24), 1.0, adapter.prepare(batch()))
    with pytest.raises(NotImplementedError, match="no G2R map"):
        adapter.run_loop(adapter.prepare(batch()), Sampler(num_steps=1), callback=print)
    with pytest.raises(ValueError, match="data.batch_size=1"):
        adapter.sample(batch(2), Sampler(num_steps=1))
    with pytest.raises(ValueError, match="reads no text"):
        create_model("diffusers-video-tiny", pipeline=PIPELINE, prompt_embeds="text.safetensors")
    with pytest.raises(ValueError, match="model.relation='text'"):
        create_model("diffusers-video-tiny", pipeline=PIPELINE, relation="text")


def test_attribute_runs_r2g_counterfactuals_and_randomisation(tmp_path):
    overrides = attribute_overrides(tmp_path, f"model.pipeline={PIPELINE}", f"model.num_frames={FRAMES}",
                                    "model.image_size=[32,48]", *VIDEO_CHECKS)
    metrics = run_task("attribute", overrides)
    run = tmp_path / "run"
    assert metrics["n_samples"] == 2
    for key in ("r2g_cf_swap_spearman", "r2g_cf_null_spearman", "r2g_cf_null_change",
                "rand_r2g_spearman_cascade_final"):
        assert metrics[key] == metrics[key] and abs(metrics[key]) < float("inf"), key
    assert metrics["r2g_cf_null_change"] > 0                  # the CLIP token knocked out changes the video
    saved = json.loads(next(run.glob("per_sample/*/faithfulness.json")).read_text())
    assert "g2r" not in saved and len(saved["r2g_counterfactual"]["maps"]["null"]) == FRAMES
    for path in sorted(run.glob("maps/*.safetensors")):
        maps = AttributionMaps.load(path)
        assert maps.frames == FRAMES and tuple(maps.r2g.ulam.shape) == (1, FRAMES, 16, 24)   # 32 x 48 frames, factor 2
        assert not maps.g2r.available
