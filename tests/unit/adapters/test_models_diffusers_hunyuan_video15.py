"""model=diffusers for HunyuanVideo-1.5 image-to-video (a tiny HunyuanVideo15ImageToVideoPipeline): the adapter's
capture against i2am.trace on the same pipeline call, the knockout of the reference's SigLIP tokens against a naive
masked attention, the step report and the refusals, and the attribute loop end to end (video maps saved,
faithfulness in modes full and proxy and randomisation finite)."""
from __future__ import annotations

import json

import pytest
import torch
from diffusers.models.embeddings import apply_rotary_emb
from helpers.tasks_util import compose_task, run_task
from helpers.video_adapters import ATOL, RTOL, VIDEO_CHECKS, attribute_overrides, video_batch
from safetensors.torch import save_file

import i2am
from i2am import toy
from i2am.adapters import create_model
from i2am.app.evaluator_fit import check_evaluators
from i2am.engine import AttributionMaps, CaptureConfig
from i2am.engine.factory import capture_for
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.sampling.sampler import Sampler

PIPELINE = "HunyuanVideo15ImageToVideoPipeline"
SIZE = (12, 16)                            # the tiny's bucket (target size 16) for a 3:4 image: 3 x 4 latent cells
FRAMES = 5                                 # 3 latent frames (the VAE compresses time by 2)
VIDEO_TOKENS = 3 * 3 * 4
SIGLIP_TOKENS = 16                         # a 4 x 4 patch grid, right after the video tokens


def batch(n=1, seed=0):
    return video_batch((24, 32), n, seed)   # a 3:4 reference: the call's bucket is SIZE


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    """7 text tokens (1 padding) and 6 glyph tokens (2 valid), with their negatives: the per-sample packing."""
    path = tmp_path_factory.mktemp("prompt") / "prompt.safetensors"
    pipe = create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=FRAMES).pipe
    save_file({k: v.clone() for k, v in toy.prompt(pipe, negative=True).items()}, str(path))
    return str(path)


def model(prompt_file, **options):
    return create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=FRAMES, num_steps=2,
                        prompt_embeds=prompt_file, **options)


@pytest.mark.parametrize("relation, guidance", [("image:reference", None), ("text", None), ("text:glyph", None),
                                                ("image:reference", 1.0)])
def test_capture_equals_the_trace_of_the_same_pipeline_call(prompt_file, relation, guidance):
    """The adapter's capture and the trace read the same q and k of the conditional call of each step (the guider's
    unconditional second call skipped by both): the maps agree, with the video's frame axis."""
    adapter = model(prompt_file, relation=relation, guidance=guidance)
    scale = adapter.pipe.guider.guidance_scale
    sampler = Sampler(num_steps=2, seed=3)
    plain = adapter.sample(batch(), sampler)["latents"]
    with capture_for(adapter, CaptureConfig(num_steps=2, time_groups=2)) as cap:
        latents = adapter.sample(batch(), sampler)["latents"]
    ours = cap.maps()
    with i2am.trace(adapter.pipe, CaptureConfig(time_groups=2)) as tr:
        adapter.sample(batch(), sampler)
    theirs = tr.maps.relation(relation)
    assert torch.equal(latents, plain)                        # the capture perturbs nothing
    assert adapter.pipe.guider.guidance_scale == scale        # the run's guidance is restored after the call
    assert ours.frames == theirs.frames == 3 and ours.meta["video"] == theirs.meta["video"]
    assert ours.meta["steps_seen"] == 2 and sorted(ours.raw) == sorted(theirs.raw)
    assert cap.skipped_repeats == (0 if guidance == 1.0 else 2)
    for key, value in ours.raw.items():
        torch.testing.assert_close(value, theirs.raw[key], rtol=RTOL, atol=ATOL, msg=key)


def test_guidance_sets_the_guiders_scale_for_the_call(prompt_file):
    """guidance 1 turns the guider's second call off (one transformer call per step); None keeps the guider's 6."""
    calls = {}
    for guidance in (None, 1.0):
        adapter = model(prompt_file, guidance=guidance)
        handle = adapter.transformer.register_forward_hook(lambda *a, g=guidance: calls.__setitem__(
            g, calls.get(g, 0) + 1))
        adapter.sample(batch(), Sampler(num_steps=2, seed=1))
        handle.remove()
    assert calls == {None: 4, 1.0: 2}


def naive_attention(attn, kwargs, keep):
    """Block attention with the attention itself in float64: q, k, v through the layer's own projections, norms and
    rotary embedding (float32, as the processor computes them), the padding mask as the processor builds it, and
    every query outside the reference's SigLIP tokens barred from its removed ones."""
    h, e, rope = kwargs["hidden_states"], kwargs["encoder_hidden_states"], kwargs["image_rotary_emb"]
    heads = lambda x: x.unflatten(2, (attn.heads, -1))
    q = apply_rotary_emb(attn.norm_q(heads(attn.to_q(h))), rope, sequence_dim=1)
    k = apply_rotary_emb(attn.norm_k(heads(attn.to_k(h))), rope, sequence_dim=1)
    q = torch.cat([q, attn.norm_added_q(heads(attn.add_q_proj(e)))], 1).transpose(1, 2).double()
    k = torch.cat([k, attn.norm_added_k(heads(attn.add_k_proj(e)))], 1).transpose(1, 2).double()
    v = torch.cat([heads(attn.to_v(h)), heads(attn.add_v_proj(e))], 1).transpose(1, 2).double()
    length = q.shape[2]
    valid = torch.cat([torch.ones(h.shape[0], h.shape[1], dtype=torch.bool), kwargs["attention_mask"].bool()], 1)
    allowed = valid[:, None, :, None] & valid[:, None, None, :]
    reference = slice(VIDEO_TOKENS, VIDEO_TOKENS + SIGLIP_TOKENS)
    outside = torch.ones(length, dtype=torch.bool)
    outside[reference] = False
    allowed[:, 0, outside, reference] &= keep[:, None, :]
    logits = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).masked_fill(~allowed, float("-inf"))
    out = (torch.softmax(logits, -1) @ v).transpose(1, 2).flatten(2)
    video = out[:, :h.shape[1]] @ attn.to_out[0].weight.double().T + attn.to_out[0].bias.double()
    context = out[:, h.shape[1]:] @ attn.to_add_out.weight.double().T + attn.to_add_out.bias.double()
    return video, context, valid[:, h.shape[1]:]


def test_knockout_equals_masked_attention_and_removes_nothing_when_all_kept(prompt_file):
    """Block 0's attention in the first transformer call (the conditional one) equals the naive masked attention of
    its recorded inputs, on the video tokens and the valid context tokens' output; keeping every token runs the
    original call (bit-identical latents); the unconditional call is masked alike."""
    adapter = model(prompt_file)
    calls = []
    sampler = Sampler(num_steps=1, seed=2)
    plain = adapter.sample(batch(), sampler)["latents"]
    keep = torch.rand(1, SIGLIP_TOKENS, generator=torch.Generator().manual_seed(1)) > 0.5
    attn = adapter.transformer.transformer_blocks[0].attn
    with adapter.token_knockout() as knockout:
        knockout.set_keep(lambda grid: torch.ones(1, grid[0] * grid[1], dtype=torch.bool))
        kept = adapter.sample(batch(), sampler)["latents"]
        knockout.set_keep(lambda grid: keep)
        handle = attn.register_forward_hook(lambda m, a, kw, out: calls.append((kw, out)), with_kwargs=True)
        removed = adapter.sample(batch(), sampler)["latents"]
        handle.remove()
    assert torch.equal(kept, plain)                           # nothing removed: the original arguments
    assert not torch.equal(removed, plain)
    assert len(calls) == 2                                    # the conditional call, then the unconditional one
    for kwargs, (video_out, context_out) in calls:
        with torch.no_grad():
            video, context, valid = naive_attention(attn, kwargs, keep)
        assert bool((~valid).any())                           # padding rows exist (their output is not compared)
        torch.testing.assert_close(video_out.double(), video, rtol=RTOL, atol=1e-6)   # float32 vs float64
        torch.testing.assert_close(context_out.double()[valid], context[valid], rtol=RTOL, atol=1e-6)
    assert torch.equal(adapter.sample(batch(), sampler)["latents"], plain)               # restored on exit


def test_step_report_and_refusals(prompt_file):
    """The scheduler's step reports each step's latents (the call has no step callback)."""
    adapter = model(prompt_file)
    points = []
    out = adapter.sample(batch(), Sampler(num_steps=2, seed=1), callback=points.append)
    assert tuple(out["latents"].shape) == (1, 4, 3, 3, 4) and tuple(out["images"].shape) == (1, 3, FRAMES, *SIZE)
    assert [p["step"] for p in points] == [0, 1] and torch.equal(points[-1]["x_next"], out["latents"])
    assert torch.equal(points[1]["x"], points[0]["x_next"])
    torch.testing.assert_close(points[0]["x"] + (points[0]["sigma_next"] - points[0]["sigma"]) * points[0]["eps"],
                               points[0]["x_next"], rtol=1e-5, atol=1e-6)   # eps is the Euler step's velocity
    with pytest.raises(ValueError, match="data.batch_size=1"):
        adapter.sample(batch(2), Sampler(num_steps=1))
    with pytest.raises(ValueError, match=r"model.image_size=\[32, 64\].*set model.image_size=\[12, 20\]"):
        create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=(32, 64), num_frames=FRAMES)
    with pytest.raises(ValueError, match="model.num_frames=4"):
        create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=4)
    with pytest.raises(ValueError, match="model.relation=text:glyph.*model.prompt_embeds"):
        create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=FRAMES,
                     relation="text:glyph")   # the default glyph embedding: no valid token
    with pytest.raises(NotImplementedError, match="model.relation=image:reference"):
        model(prompt_file, relation="text").token_knockout()
    with pytest.raises(ValueError, match="per-sample positions"), \
            JointTokenKnockout(adapter.transformer, rows=("generated",)) as knockout:   # rows: per-sample segments
        knockout.set_keep(lambda grid: torch.zeros(1, grid[0] * grid[1], dtype=torch.bool))
        adapter.sample(batch(), Sampler(num_steps=1))


@pytest.mark.parametrize("guidance", [None, 1.0])
def test_predict_x0_is_the_trajectorys_denoised_latent(prompt_file, guidance):
    """The proxy mode's one-call x0 prediction at a point of a run equals that run's x - sigma * velocity (the
    velocity recovered from the Euler step: float32 rounding of a division by the step's sigma difference), with the
    guider's two calls and with one."""
    adapter = model(prompt_file, guidance=guidance)
    inputs, points = adapter.prepare(batch()), []
    adapter.run_loop(inputs, Sampler(num_steps=2, seed=1), callback=points.append)
    assert len(points) == 2
    for point in points:
        x0 = adapter.predict_x0(point["x"], point["t"], inputs, guidance=guidance)
        torch.testing.assert_close(x0, point["denoised"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(points[0]["denoised"], points[1]["denoised"], rtol=1e-3, atol=1e-3)


def _overrides(tmp_path, *extra):
    return attribute_overrides(tmp_path, f"model.pipeline={PIPELINE}", "model.image_size=[12,16]", *extra)


CHECKS = VIDEO_CHECKS


def test_attribute_saves_video_maps_and_the_video_evaluators_run(tmp_path, prompt_file):
    overrides = _overrides(tmp_path, f"model.prompt_embeds={prompt_file}", *CHECKS)
    _, notes = check_evaluators(compose_task("attribute", overrides))
    assert not any("mode proxy left out" in n for n in notes)
    metrics = run_task("attribute", overrides)
    run = tmp_path / "run"
    assert metrics["n_samples"] == 2
    for key in ("faith_full_latent_del_auc", "faith_full_pixel_del_gap", "faith_proxy_latent_del_auc",
                "faith_proxy_pixel_del_curve_error", "r2g_cf_swap_spearman", "r2g_cf_null_change",
                "rand_r2g_spearman_cascade_final", "rand_g2r_spearman_cascade_final"):
        assert metrics[key] == metrics[key] and abs(metrics[key]) < float("inf"), key
    assert metrics["r2g_cf_null_change"] > 0                  # removing every SigLIP token changes the video
    saved = json.loads(next(run.glob("per_sample/*/faithfulness.json")).read_text())
    assert saved["g2r"]["removal"] == "knockout"
    paths = sorted(run.glob("maps/*.safetensors"))
    assert len(paths) == 2
    for path in paths:
        maps = AttributionMaps.load(path)
        assert maps.frames == 3 and tuple(maps.r2g.ulam.shape) == (1, 3, 3, 4)
        assert tuple(maps.g2r.ulam.shape) == (1, 3, 4, 4)                       # per frame, over the SigLIP grid


def test_a_saved_folder_loads_without_its_text_encoders(tmp_path, prompt_file):
    """model=diffusers reads a diffusers folder without its two text encoders and tokenizers (no text is encoded):
    the loaded pipeline samples the same video as the one saved."""
    from i2am.adapters.diffusers.video.tiny import build_hunyuan_video15

    build_hunyuan_video15(seed=3).save_pretrained(tmp_path / "hunyuan")
    loaded = create_model("diffusers", pipeline=PIPELINE, path=str(tmp_path / "hunyuan"), image_size=SIZE,
                          num_frames=FRAMES, num_steps=2, prompt_embeds=prompt_file, guidance=None)   # the guider's
    built = create_model("diffusers-video-tiny", pipeline=PIPELINE, image_size=SIZE, num_frames=FRAMES, num_steps=2,
                         prompt_embeds=prompt_file, seed=3)
    assert type(loaded).__name__ == "HunyuanVideo15Adapter"
    assert all(getattr(loaded.pipe, name, None) is None for name in ("text_encoder", "text_encoder_2"))
    sampler = Sampler(num_steps=2, seed=1)
    torch.testing.assert_close(loaded.sample(batch(), sampler)["latents"], built.sample(batch(), sampler)["latents"],
                               rtol=0, atol=0)   # the same weights, saved and loaded in float32: the same call
