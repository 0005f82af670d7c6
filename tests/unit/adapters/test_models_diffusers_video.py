"""model=diffusers for image-to-video pipelines (tiny WanImageToVideoPipeline, ChronoEditPipeline,
SkyReelsV2ImageToVideoPipeline): the adapter's capture against i2am.trace on the same pipeline call, the image-token
knockout against a naive masked attention, the attribute loop end to end (video maps and frames saved, faithfulness
and randomisation finite) and the evaluators refused at startup."""
from __future__ import annotations

import json

import pytest
import torch
from helpers.tasks_util import compose_task, run_task
from helpers.video_adapters import RTOL, VIDEO_CHECKS, attribute_overrides, capture_and_trace, video_batch
from PIL import Image

from i2am.adapters import create_model
from i2am.app.evaluator_fit import EvaluatorMismatchError
from i2am.app.startup_checks import run_checks
from i2am.engine import AttributionMaps
from i2am.engine.wan_knockout import WanImageTokenKnockout
from i2am.engine.wan_layers import WAN_TEXT_TOKENS
from i2am.errors import UserError
from i2am.sampling.sampler import Sampler

PIPELINES = ("WanImageToVideoPipeline", "ChronoEditPipeline", "SkyReelsV2ImageToVideoPipeline")
SIZE = (32, 48)                            # 2 x 3 cells per latent frame


def batch(n=1, seed=0):
    return video_batch(SIZE, n, seed)


@pytest.fixture(scope="module", params=PIPELINES)
def adapter(request):
    return create_model("diffusers-video-tiny", pipeline=request.param, image_size=SIZE, num_steps=2)


@pytest.mark.parametrize("relation", ["image:reference", "text"])
def test_capture_equals_the_trace_of_the_same_pipeline_call(relation):
    """Two mechanisms pick the conditional call of each CFG step (the adapter's records_call, the trace's call count
    per scheduler step) and read the same layers: the maps agree, the frames are the pipeline's own."""
    for pipeline in PIPELINES:
        model = create_model("diffusers-video-tiny", pipeline=pipeline, image_size=SIZE, num_steps=2,
                             relation=relation)
        ours, theirs = capture_and_trace(model, relation, SIZE)
        assert ours.frames == theirs.frames == 2 and ours.meta["video"] == theirs.meta["video"]
        assert ours.meta["steps_seen"] == 2


def naive_attn2(attn, hidden_states, context, keep):
    """Wan's attn2 in float64 with the image tokens' logits set to -inf where ``keep`` is False (a query with no kept
    image token gets nothing from the image branch)."""
    attn = attn.double()
    images, text = context[:, :-WAN_TEXT_TOKENS].double(), context[:, -WAN_TEXT_TOKENS:].double()
    heads = lambda x: x.unflatten(2, (attn.heads, -1)).transpose(1, 2)
    q = heads(attn.norm_q(attn.to_q(hidden_states.double())))
    scale = q.shape[-1] ** -0.5
    k, v = heads(attn.norm_k(attn.to_k(text))), heads(attn.to_v(text))
    ki, vi = heads(attn.norm_added_k(attn.add_k_proj(images))), heads(attn.add_v_proj(images))
    out = torch.softmax(q @ k.transpose(-1, -2) * scale, -1) @ v
    logits = (q @ ki.transpose(-1, -2) * scale).masked_fill(~keep[:, None, None, :], float("-inf"))
    out = out + torch.softmax(logits, -1).nan_to_num(0.0) @ vi
    out = attn.to_out[0](out.transpose(1, 2).flatten(2))
    attn.float()
    return out


def test_knockout_equals_masked_attention_and_removes_nothing_when_all_kept(adapter):
    attn = adapter.transformer.blocks[0].attn2
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 12, attn.inner_dim, generator=g)
    context = torch.randn(3, 17 + WAN_TEXT_TOKENS, attn.inner_dim, generator=g)
    keep = torch.rand(3, 17, generator=g) > 0.5
    keep[2] = False                                           # every image token of the last row removed
    with torch.no_grad():
        plain = attn(hidden, context)
        with WanImageTokenKnockout(adapter.transformer) as knockout:
            knockout.set_keep(lambda grid: torch.ones(3, grid[1], dtype=torch.bool))
            kept = attn(hidden, context)
            knockout.set_keep(lambda grid: keep)
            removed = attn(hidden, context)
        expected = naive_attn2(attn, hidden, context, keep)
    assert torch.equal(kept, plain)                           # nothing removed: the original processor
    torch.testing.assert_close(removed.double(), expected, rtol=RTOL, atol=1e-6)   # float32 vs float64
    assert torch.equal(attn(hidden, context), plain)          # restored on exit


def test_predict_x0_is_the_trajectorys_denoised_latent(adapter):
    """The proxy mode's one-call x0 prediction at a point of a run equals that run's x - sigma * velocity (the
    velocity recovered from the Euler step: float32 rounding of a division by the step's sigma difference)."""
    inputs, points = adapter.prepare(batch()), []
    adapter.run_loop(inputs, Sampler(num_steps=2, seed=1), callback=points.append)
    assert len(points) == 2
    for point in points:
        x0 = adapter.predict_x0(point["x"], point["t"], inputs)
        torch.testing.assert_close(x0, point["denoised"], rtol=1e-5, atol=1e-5)


def test_sampling_refusals_name_the_key_and_the_fix(adapter):
    with pytest.raises(ValueError, match="data.batch_size=1"):
        adapter.sample(batch(2), Sampler(num_steps=1))
    with pytest.raises(ValueError, match="sampler.scheduler"):
        adapter.sample(batch(), Sampler(num_steps=1, scheduler="ddim"))
    with pytest.raises(ValueError, match="model.num_frames=6"):
        create_model("diffusers-video-tiny", num_frames=6)
    with pytest.raises(ValueError, match="set model.num_frames=5"):
        create_model("diffusers-video-tiny", pipeline="ChronoEditPipeline", num_frames=9)
    with pytest.raises(ValueError, match="model.path"):
        create_model("diffusers", pipeline="WanImageToVideoPipeline")
    with pytest.raises(ValueError, match="model.prompt_embeds"):
        create_model("diffusers-video-tiny", prompt="a shirt")
    with pytest.raises(ValueError, match="model.pipeline=CogVideoXImageToVideoPipeline: .*i2am.trace"):
        create_model("diffusers-video-tiny", pipeline="CogVideoXImageToVideoPipeline")


def _overrides(tmp_path, *extra):
    return attribute_overrides(tmp_path, *extra)


CHECKS = [*VIDEO_CHECKS, "evaluators.faithfulness.proxy_steps=[0.5]"]


def test_attribute_saves_video_maps_and_frames_and_the_video_evaluators_run(tmp_path):
    metrics = run_task("attribute", _overrides(tmp_path, *CHECKS))
    run = tmp_path / "run"
    assert metrics["n_samples"] == 2
    for key in ("faith_full_latent_del_auc", "faith_full_pixel_del_gap", "faith_proxy_latent_del_auc",
                "faith_proxy_pixel_del_curve_error", "r2g_cf_swap_spearman",
                "r2g_cf_null_spearman", "r2g_cf_null_change", "rand_r2g_spearman_cascade_final",
                "rand_g2r_spearman_cascade_final", "rand_r2g_pass"):
        assert metrics[key] == metrics[key] and abs(metrics[key]) < float("inf"), key
    assert metrics["r2g_cf_null_change"] > 0                  # removing every image token changes the video
    saved = json.loads(next(run.glob("per_sample/*/faithfulness.json")).read_text())
    assert saved["g2r"]["removal"] == "knockout"
    assert len(saved["r2g_counterfactual"]["maps"]["null"]) == 2          # [F, h, w]: per latent frame
    for path in sorted(run.glob("maps/*.safetensors")):
        maps = AttributionMaps.load(path)
        assert maps.frames == 2 and tuple(maps.r2g.ulam.shape) == (1, 2, 8, 6)   # 5 frames, 128 x 96
        assert tuple(maps.g2r.ulam.shape) == (1, 2, 1, 17)                      # per frame, over the CLIP tokens
        stem = path.stem
        strip = Image.open(run / "samples" / f"{stem}.png")
        assert strip.size == (5 * 96, 128)                                      # the 5 frames side by side
        assert Image.open(run / "samples" / f"{stem}.gif").n_frames == 5
        assert (run / "figures" / f"{stem}.png").is_file() and (run / "per_sample" / stem / "r2g.gif").is_file()


def test_imacs_localisation_and_batches_are_refused_at_startup_or_left_out(tmp_path):
    explicit = compose_task("attribute", _overrides(tmp_path, "evaluator_set=toy"))
    with pytest.raises(EvaluatorMismatchError, match="evaluator 'imacs' cannot apply to a video model.*evaluator_set"):
        run_checks(explicit)
    with pytest.raises(UserError, match="data.batch_size=4: model.pipeline=WanImageToVideoPipeline.*data.batch_size=1"):
        run_checks(compose_task("attribute", [*_overrides(tmp_path), "data.batch_size=4"]))
    from i2am.app.evaluator_fit import check_evaluators

    kept, notes = check_evaluators(compose_task("attribute", _overrides(tmp_path)))   # evaluator_set=auto
    assert kept == [] and any("imacs: left out" in n for n in notes) and any("localization: left out" in n
                                                                             for n in notes)
    assert not (tmp_path / "run").exists()                    # nothing sampled or written


def test_video_change_and_error_follow_the_latent_frames():
    """cell_change groups video frames as the VAE does (frame 0 alone, then 4 per latent frame); region_mse of a
    video is the mean of its frames' image region_mse; as_plane stacks R2G frames and averages G2R over them."""
    from i2am.evaluation.faithfulness import cell_change, region_mse, region_weight
    from i2am.evaluation.randomization import as_plane

    baseline = torch.zeros(1, 3, 9, 4, 6)
    video = torch.arange(9.0).view(1, 1, 9, 1, 1).expand(2, 3, 9, 4, 6).clone()   # frame t changed by t
    video[1, :, :, :2] = 0                                                          # row 1: top half unchanged
    change = cell_change(video, baseline, (3, 2, 3), temporal_ratio=4)
    assert change.shape == (2, 3, 2, 3)
    assert torch.equal(change[0, :, 0, 0], torch.tensor([0.0, 2.5, 6.5]))          # means of frames 0 | 1-4 | 5-8
    assert torch.equal(change[1, :, 0], torch.zeros(3, 3)) and torch.equal(change[1, :, 1], change[0, :, 1])
    with pytest.raises(ValueError, match="not 2 latent frames"):
        cell_change(video, baseline, (2, 2, 3), temporal_ratio=4)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, 3, 8, 6, generator=g), torch.randn(2, 4, 3, 8, 6, generator=g)
    weight = region_weight(torch.rand(1, 1, 32, 24, generator=g), (8, 6), a)
    per_frame = torch.stack([region_mse(a[:, :, f], b[:, :, f], weight) for f in range(3)]).mean(0)
    torch.testing.assert_close(region_mse(a, b, weight), per_frame, rtol=1e-6, atol=0)   # summation order differs
    maps = torch.arange(12.0).view(2, 2, 3)
    assert torch.equal(as_plane(maps, "r2g"), maps.reshape(4, 3))
    assert torch.equal(as_plane(maps, "g2r"), maps.mean(0)) and torch.equal(as_plane(maps[0], "r2g"), maps[0])


def test_prompt_embeds_are_read_from_a_file(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    embeds, negative = (torch.randn(1, WAN_TEXT_TOKENS, 16, generator=g) for _ in range(2))
    save_file({"prompt_embeds": embeds, "negative_prompt_embeds": negative}, str(tmp_path / "text.safetensors"))
    model = create_model("diffusers-video-tiny", prompt_embeds=str(tmp_path / "text.safetensors"))
    assert torch.equal(model.prompt_embeds, embeds) and torch.equal(model.negative_prompt_embeds, negative)
    save_file({"prompt_embeds": embeds[:, :7]}, str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="exactly 512"):
        create_model("diffusers-video-tiny", prompt_embeds=str(tmp_path / "short.safetensors"))
