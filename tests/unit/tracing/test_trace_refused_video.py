"""i2am.trace refuses HunyuanVideo15ImageToVideoPipeline (a tiny build from config) with the reason of
i2am.engine.refused_pipelines, and the facts the reason states hold on the tiny build: HunyuanVideo-1.5's SigLIP
tokens lead the joint-attention context while its byT5 and text tokens start per sample."""
from __future__ import annotations

import re

import pytest
import torch

import i2am
from i2am.adapters.diffusers.coverage import COVERAGE
from i2am.adapters.diffusers.video.refused_tiny import (
    HUNYUAN_BYT5_DIM,
    HUNYUAN_IMAGE_DIM,
    HUNYUAN_TEXT_DIM,
    REFUSED_VIDEO_PIPELINES,
    build_refused_video_pipeline,
)
from i2am.engine.joint import find_blocks
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


def test_hunyuan_video15_image_tokens_lead_the_context_and_text_starts_per_sample():
    transformer = build_refused_video_pipeline("HunyuanVideo15ImageToVideoPipeline").transformer
    with pytest.raises(ValueError, match="HunyuanVideo15Transformer3DModel is not a supported diffusion transformer"):
        find_blocks(transformer)   # the reason's "no layout reader": update it when one is added
    outputs = {}
    for name in ("image_embedder", "context_embedder", "context_embedder_2"):
        getattr(transformer, name).register_forward_hook(
            lambda module, args, out, name=name: outputs.__setitem__(name, out))
    transformer.transformer_blocks[0].register_forward_pre_hook(
        lambda module, args: outputs.__setitem__("context", args[1]))
    generator = torch.Generator().manual_seed(0)
    image_tokens, byt5_valid, text_valid = 16, (2, 5), (6, 3)
    byt5_mask = torch.tensor([[1] * n + [0] * (6 - n) for n in byt5_valid])
    text_mask = torch.tensor([[1] * n + [0] * (7 - n) for n in text_valid])
    with torch.no_grad():
        transformer(hidden_states=torch.randn(2, 9, 2, 4, 4, generator=generator), timestep=torch.full((2,), 500.0),
                    encoder_hidden_states=torch.randn(2, 7, HUNYUAN_TEXT_DIM, generator=generator),
                    encoder_attention_mask=text_mask,
                    encoder_hidden_states_2=torch.randn(2, 6, HUNYUAN_BYT5_DIM, generator=generator),
                    encoder_attention_mask_2=byt5_mask,
                    image_embeds=torch.randn(2, image_tokens, HUNYUAN_IMAGE_DIM, generator=generator))
    kind = transformer.cond_type_embed.weight   # rows: 0 text, 1 byT5, 2 image; added to each token as in forward
    context = outputs["context"]
    # the same additions on the same tensors as the forward: exact
    assert torch.equal(context[:, :image_tokens], outputs["image_embedder"] + kind[2])
    for i, (n_byt5, n_text) in enumerate(zip(byt5_valid, text_valid)):
        byt5_end = image_tokens + n_byt5
        assert torch.equal(context[i, image_tokens:byt5_end], outputs["context_embedder_2"][i, :n_byt5] + kind[1])
        assert torch.equal(context[i, byt5_end:byt5_end + n_text], outputs["context_embedder"][i, :n_text] + kind[0])
