"""model=diffusers for I2VGen-XL (tiny, from config), whose UNet folds the frames into the batch: the adapter's
capture against i2am.trace on the same pipeline call, the token knockout of a context range on (chunk, sample, frame)
rows against a naive masked attention, the proxy x0, the shared reference latent of a call's rows, the attribute
loop end to end (video maps, faithfulness and randomisation finite) and the refusals (Stable Video Diffusion)."""
from __future__ import annotations

import json

import pytest
import torch
from helpers.tasks_util import run_task
from helpers.video_adapters import RTOL, VIDEO_CHECKS, attribute_overrides, capture_and_trace, video_batch

from i2am.adapters import create_model
from i2am.engine import AttributionMaps
from i2am.engine.pipelines import context_parts
from i2am.evaluation.faithfulness import repeat_inputs
from i2am.sampling.sampler import Sampler

PIPELINE = "I2VGenXLPipeline"
SIZE, FRAMES = (64, 48), 3                 # latent 8 x 6 per frame (VAE factor 8)


def batch(n=1, seed=0):
    return video_batch(SIZE, n, seed)


def tiny(**options):
    return create_model("diffusers-video-tiny", **{"pipeline": PIPELINE, "image_size": SIZE, "num_steps": 2,
                                                   "num_frames": FRAMES, **options})


@pytest.fixture(scope="module")
def adapter():
    return tiny()


@pytest.mark.parametrize("relation", ["image:reference", "image:clip", "text"])
def test_capture_equals_the_trace_of_the_same_pipeline_call(relation):
    """The adapter's conditional rows (its conditional_slice, frames unfolded by frames_in_batch) and the trace's
    (chunk count from prepare_latents) read the same layers: the maps agree; the capture perturbs nothing."""
    model = tiny(relation=relation)
    ours, theirs = capture_and_trace(model, relation, SIZE)
    assert ours.frames == theirs.frames == FRAMES and ours.meta["video"] == {"temporal_ratio": 1, "spatial_ratio": 8}
    assert ours.meta["steps_seen"] == 2
    assert tuple(ours.r2g.ulam.shape) == (1, FRAMES, 8, 6)


def naive_attn2(attn, hidden_states, context, keep):
    """A plain attn2 in float64 with the logits of keys ``keep == False`` ([rows, Lk]) set to -inf."""
    attn = attn.double()
    heads = lambda x: x.unflatten(2, (attn.heads, -1)).transpose(1, 2)
    q = heads(attn.to_q(hidden_states.double()))
    k, v = heads(attn.to_k(context.double())), heads(attn.to_v(context.double()))
    logits = (q @ k.transpose(-1, -2) * attn.scale).masked_fill(~keep[:, None, None, :], float("-inf"))
    out = (torch.softmax(logits, -1) @ v).transpose(1, 2).flatten(2)
    out = attn.to_out[0](out)
    attn.float()
    return out


@pytest.mark.parametrize("samples", [1, 2])
def test_knockout_of_folded_frames_equals_masked_attention(adapter, samples):
    """Rows (chunk, sample, frame) of a CFG call: each sample's keep mask over the reference-latent tokens (a range
    between the prompt and the CLIP tokens) holds for its frames in the positive chunk; the negative chunk and the
    other tokens are untouched."""
    spec = adapter.attribution_layers()[0]
    attn = spec.module
    _, (start, stop), grid = next(p for p in context_parts(adapter.pipe) if p[0] == "image:reference")
    g = torch.Generator().manual_seed(1)
    rows, prompt = 2 * samples * FRAMES, 5
    lk = prompt + grid[0] * grid[1] + adapter.unet.config.in_channels
    hidden = torch.randn(rows, 12, attn.inner_dim, generator=g)
    context = torch.randn(samples, lk, attn.cross_attention_dim, generator=g)
    context = context.repeat_interleave(FRAMES, 0).repeat(2, 1, 1)   # one context per sample, over its frames
    keep = torch.rand(samples, grid[0] * grid[1], generator=g) > 0.5
    keep[-1] = False                                          # the last sample loses every reference token
    expected_keep = torch.ones(rows, lk, dtype=torch.bool)
    expected_keep[rows // 2:, lk + start:lk + stop] = keep.repeat_interleave(FRAMES, 0)
    adapter.pipe._guidance_scale = 6.0                        # the call's CFG, as the pipeline sets it
    with torch.no_grad():
        plain = attn(hidden, context)
        with adapter.token_knockout(layers=[spec.name]) as knockout:
            knockout.set_keep(lambda grid: torch.ones(samples, grid[0] * grid[1], dtype=torch.bool))
            kept = attn(hidden, context)
            knockout.set_keep(lambda grid: keep)
            removed = attn(hidden, context)
        expected = naive_attn2(attn, hidden, context, expected_keep)
    assert torch.equal(kept, plain)                           # nothing removed: the original processor
    torch.testing.assert_close(removed.double(), expected, rtol=RTOL, atol=1e-6)   # float32 vs float64
    assert torch.equal(attn(hidden, context), plain)          # restored on exit


def test_predict_x0_is_the_trajectorys_denoised_latent(adapter):
    inputs, points = adapter.prepare(batch()), []
    adapter.run_loop(inputs, Sampler(num_steps=2, seed=1), callback=points.append)
    assert len(points) == 2 and points[0]["x"].shape == (1, 4, FRAMES, 8, 6)
    for point in points:
        x0 = adapter.predict_x0(point["x"], point["t"], inputs)
        torch.testing.assert_close(x0, point["denoised"], rtol=1e-5, atol=1e-5)


def test_a_calls_rows_share_the_reference_latent(adapter):
    """The pipeline samples the reference's VAE latent without a generator: the adapter seeds it by sample id, once
    per call, so re-runs of a sample in a batch of two give the video of a run alone (batch size changes the
    kernels' summation order, hence the tolerance) and a re-run repeats it exactly."""
    inputs, sampler = adapter.prepare(batch()), Sampler(num_steps=2, seed=2)
    alone = adapter.run_loop(inputs, sampler)
    assert torch.equal(adapter.run_loop(inputs, sampler), alone)
    torch.manual_seed(123)                                    # the global RNG is not what the latent depends on
    pair = adapter.run_loop(repeat_inputs(inputs, 2), sampler)
    for row in pair:
        torch.testing.assert_close(row, alone[0], rtol=1e-5, atol=1e-5)


def test_refusals_name_the_key_and_the_fix(adapter):
    with pytest.raises(ValueError, match="data.batch_size=1"):
        adapter.sample(batch(2), Sampler(num_steps=1))
    with pytest.raises(ValueError, match="sampler.scheduler"):
        adapter.sample(batch(), Sampler(num_steps=1, scheduler="euler"))
    with pytest.raises(NotImplementedError, match="removal=knockout"):
        adapter.token_knockout(mode="replace")
    with pytest.raises(NotImplementedError, match="model.relation='text'.*model.relation=image:reference"):
        tiny(relation="text").token_knockout()
    with pytest.raises(ValueError, match="counterfactual=false"):
        tiny(relation="text").check_counterfactuals(["null"])
    with pytest.raises(ValueError, match="model.relation='image:foo'"):
        tiny(relation="image:foo")
    with pytest.raises(ValueError, match="model.num_frames=0"):
        tiny(num_frames=0)
    with pytest.raises(ValueError, match="model.prompt_embeds"):
        tiny(prompt="a shirt")


def _overrides(tmp_path, *extra):
    return attribute_overrides(tmp_path, f"model.pipeline={PIPELINE}", f"model.num_frames={FRAMES}", *extra)


CHECKS = [*VIDEO_CHECKS, "evaluators.faithfulness.proxy_steps=[0.5]"]


def test_attribute_saves_video_maps_and_the_video_evaluators_run(tmp_path):
    metrics = run_task("attribute", _overrides(tmp_path, *CHECKS))
    run = tmp_path / "run"
    assert metrics["n_samples"] == 2
    for key in ("faith_full_latent_del_auc", "faith_full_pixel_del_gap", "faith_proxy_latent_del_auc",
                "r2g_cf_swap_spearman", "r2g_cf_null_spearman", "r2g_cf_null_change",
                "rand_r2g_spearman_cascade_final", "rand_g2r_spearman_cascade_final"):
        assert metrics[key] == metrics[key] and abs(metrics[key]) < float("inf"), key
    assert metrics["r2g_cf_null_change"] > 0                  # every reference-latent token removed changes the video
    saved = json.loads(next(run.glob("per_sample/*/faithfulness.json")).read_text())
    assert saved["g2r"]["removal"] == "knockout"
    assert len(saved["r2g_counterfactual"]["maps"]["null"]) == FRAMES
    for path in sorted(run.glob("maps/*.safetensors")):
        maps = AttributionMaps.load(path)
        assert maps.frames == FRAMES and tuple(maps.r2g.ulam.shape) == (1, FRAMES, 16, 12)   # 128 x 96 frames
        assert tuple(maps.g2r.ulam.shape) == (1, FRAMES, 8, 8)   # per frame, over the 8 x 8 reference-latent tokens
        assert (run / "samples" / f"{path.stem}.gif").is_file()
