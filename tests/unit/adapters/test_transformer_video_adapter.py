"""TransformerVideoAdapter, the base of the image-to-video transformer adapters: a subclass that leaves one of its
pipeline's parts unsaid fails with an error naming that part, and each pipeline's adapter says every one."""
from __future__ import annotations

import pytest

from i2am.adapters.diffusers.video.hunyuan_video15 import HunyuanVideo15Adapter
from i2am.adapters.diffusers.video.ltx2 import LTX2VideoAdapter
from i2am.adapters.diffusers.video.tiny import build_video_pipeline
from i2am.adapters.diffusers.video.transformer import TransformerVideoAdapter
from i2am.adapters.diffusers.video.wan import WanVideoAdapter

# what each subclass says for its pipeline, and how to ask for it
PARTS = {"layer_specs": lambda a: a.layer_specs(), "latent_channels": lambda a: a.latent_channels,
         "patch": lambda a: a.patch, "_set_prompt_embeds": lambda a: a._set_prompt_embeds(None),
         "prompt_kwargs": lambda a: a.prompt_kwargs(1), "knockout": lambda a: a.knockout(),
         "conditioning_stages": lambda a: a.conditioning_stages(), "decode_latents": lambda a: a.decode_latents(None)}


class Unsaid(TransformerVideoAdapter):
    pipeline_class = "WanImageToVideoPipeline"


def test_a_subclass_without_its_pipelines_parts_fails_at_construction_naming_the_first():
    with pytest.raises(NotImplementedError, match="Unsaid does not define layer_specs: every "
                                                  "TransformerVideoAdapter subclass says"):
        Unsaid(build_video_pipeline(), "tiny", None, (32, 48), 5, 2, None, None)


@pytest.mark.parametrize("part", PARTS)
def test_each_unsaid_part_names_itself(part):
    adapter = Unsaid.__new__(Unsaid)   # no state needed: the base's parts raise before reading any
    with pytest.raises(NotImplementedError, match=f"Unsaid does not define {part}:"):
        PARTS[part](adapter)


@pytest.mark.parametrize("adapter", [WanVideoAdapter, LTX2VideoAdapter, HunyuanVideo15Adapter])
def test_each_pipelines_adapter_says_every_part(adapter):
    unsaid = [part for part in PARTS if getattr(adapter, part) is getattr(TransformerVideoAdapter, part)]
    assert unsaid == [] and isinstance(adapter.blocks_attr, str)
