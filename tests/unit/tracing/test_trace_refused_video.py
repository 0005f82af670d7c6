"""i2am.trace refuses LTX2ImageToVideoPipeline (a tiny build from config) with the reason of
i2am.engine.refused_pipelines, and the fact the reason states holds on the tiny build: LTX-2's reference is the first
latent frame of the video tokens, kept clean (timestep 0, unchanged between steps)."""
from __future__ import annotations

import re

import pytest
import torch

import i2am
from i2am.adapters.diffusers.coverage import COVERAGE
from i2am.adapters.diffusers.video.refused_tiny import (
    LTX2_CAPTION_DIM,
    REFUSED_VIDEO_PIPELINES,
    build_refused_video_pipeline,
)
from i2am.engine.refused_pipelines import REFUSED_PIPELINES


@pytest.fixture(scope="module", params=REFUSED_VIDEO_PIPELINES)
def pipe(request):
    pipe = build_refused_video_pipeline(request.param)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_trace_refuses_with_the_coverage_reason(pipe):
    name = type(pipe).__name__
    assert COVERAGE[name].note == REFUSED_PIPELINES[name] and not COVERAGE[name].supported
    with pytest.raises(ValueError, match=re.escape(f"{name} is not traced ({REFUSED_PIPELINES[name]})")):
        i2am.trace(pipe)


def test_ltx2_reference_is_the_clean_first_latent_frame():
    pipe = build_refused_video_pipeline("LTX2ImageToVideoPipeline")
    pipe.set_progress_bar_config(disable=True)
    calls = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append((kwargs["hidden_states"].clone(), kwargs["timestep"].clone())),
        with_kwargs=True)
    generator = torch.Generator().manual_seed(0)
    text = torch.randn(1, 8, LTX2_CAPTION_DIM * 3, generator=generator)   # 3: the connectors' text_proj_in_factor
    mask = torch.ones(1, 8, dtype=torch.long)
    pipe(image=torch.rand(1, 3, 32, 32, generator=generator), image_crf=0, prompt_embeds=text,
         prompt_attention_mask=mask, negative_prompt_embeds=text, negative_prompt_attention_mask=mask,
         num_inference_steps=2, guidance_scale=1.0, height=32, width=32, num_frames=5, frame_rate=25.0,
         output_type="latent", generator=generator)
    latent_frames = (5 - 1) // pipe.vae_temporal_compression_ratio + 1
    first = calls[0][0].shape[1] // latent_frames   # tokens of one latent frame (frame-major packing)
    for tokens, timestep in calls:
        assert torch.all(timestep[:, :first] == 0) and torch.all(timestep[:, first:] > 0)
    step_calls = len(calls) // 2
    (before, _), (after, _) = calls[0], calls[step_calls]
    assert torch.equal(before[:, :first], after[:, :first])   # the reference frame is never denoised
    assert not torch.equal(before[:, first:], after[:, first:])

