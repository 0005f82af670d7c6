"""``model=diffusers`` for the image-to-video pipelines of Wan 2.1's transformer: ``WanImageToVideoPipeline``,
``ChronoEditPipeline`` and ``SkyReelsV2ImageToVideoPipeline``, one small subclass each.

What the dataset batch becomes: the ``reference`` image is the pipeline's ``image``, the frame the video starts from
(its CLIP tokens are the "image:reference" keys of every block's ``attn2``, its VAE latent the first frame's
condition channels); a video of ``num_frames`` frames at ``image_size`` is generated from noise. The dataset's
``image`` and masks are not read. No text encoder is run: ``prompt_embeds`` (and ``negative_prompt_embeds`` when the
pipeline guides) are a fixed embedding of Wan's ``WAN_TEXT_TOKENS`` tokens, zeros by default, or read from
``model.prompt_embeds`` (a safetensors file with those keys, computed once elsewhere with the pipeline's
``encode_prompt``). The pipeline conditions a whole call on one image: ``data.batch_size=1``.

Sampling is the pipeline's own call (``own_loop``, ``run_loop``): the re-running checks re-run that call with the
same noise, drawn per sample from ``sample_seed(sampler.seed, sample_id)``. The capture is ``AttributionCapture``
on the video trace's layers (``i2am.engine.wan_layers``) of one relation (``model.relation``: "image:reference",
the default, or "text"): the maps are video maps (docs/video_maps.md). The pipeline runs CFG as two transformer calls
per step, the conditional one first; ``records_call`` is False for the second, so the capture records the first.
The faithfulness check removes image tokens with ``i2am.engine.wan_knockout`` (relation "image:reference" only);
its proxy mode predicts x0 in one step of the pipeline's call (``predict_x0``).

The pipeline's call, the step report, the recorded call and the refusals are ``TransformerVideoAdapter``'s
(``transformer``), which the LTX-2 and HunyuanVideo-1.5 adapters share; this module says what is Wan's.
"""
from __future__ import annotations

import torch

from i2am.adapters.diffusers.dit._prompts import read_prompt_embeds
from i2am.adapters.diffusers.video.base import negative_of
from i2am.adapters.diffusers.video.transformer import TransformerVideoAdapter
from i2am.engine.layers import LayerSpec
from i2am.engine.wan_knockout import WanImageTokenKnockout
from i2am.engine.wan_layers import WAN_TEXT_TOKENS, wan_layer_specs


class WanVideoAdapter(TransformerVideoAdapter):
    """An image-to-video pipeline on Wan 2.1's transformer (module docstring). ``guidance`` is the pipeline's
    ``guidance_scale`` (None: its default, 5.0; > 1 runs CFG as a second transformer call per step)."""

    pipeline_class = "WanImageToVideoPipeline"
    blocks_attr = "blocks"

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(480, 832),
                 num_frames: int = 81, num_steps: int = 50, relation: str | None = None,
                 prompt_embeds: str | None = None):
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation, prompt_embeds)

    def layer_specs(self) -> list[LayerSpec]:
        return wan_layer_specs(self.transformer)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def patch(self) -> tuple[int, int, int]:
        return tuple(self.transformer.config.patch_size)

    def _set_prompt_embeds(self, prompt_embeds: str | None) -> None:
        """Buffers ``prompt_embeds`` and ``negative_prompt_embeds`` (module docstring)."""
        width = self.transformer.config.text_dim
        embeds, _ = read_prompt_embeds(prompt_embeds, WAN_TEXT_TOKENS, width, None)
        if embeds.shape[1] != WAN_TEXT_TOKENS:
            raise ValueError(f"model.prompt_embeds={prompt_embeds}: {embeds.shape[1]} text tokens; Wan's attention "
                             f"takes exactly {WAN_TEXT_TOKENS} (encode_prompt pads to max_sequence_length=512)")
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative_of(prompt_embeds, embeds), persistent=False)

    def prompt_kwargs(self, n: int) -> dict:
        return dict(prompt_embeds=self.prompt_embeds.expand(n, -1, -1),
                    negative_prompt_embeds=self.negative_prompt_embeds.expand(n, -1, -1))

    def knockout(self, layers=None) -> WanImageTokenKnockout:
        return WanImageTokenKnockout(self.transformer, layers=layers)

    def conditioning_stages(self) -> list[tuple[str, list]]:
        """Its CLIP image encoder."""
        return [("image_encoder", [self.image_encoder])]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """As the pipeline decodes them: the VAE's per-channel latent mean and std undone."""
        config = self.vae.config
        mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1).to(latents.device, self.vae.dtype)
        std = torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1).to(latents.device, self.vae.dtype)
        return self.vae.decode(latents.to(self.vae.dtype) * std + mean, return_dict=False)[0].clamp(-1, 1)


class ChronoEditAdapter(WanVideoAdapter):
    """ChronoEdit: an image editor that generates a short video from the image on a Wan transformer; without temporal
    reasoning (the call's default) it generates 5 frames whatever ``num_frames`` says, the last one the edit."""

    pipeline_class = "ChronoEditPipeline"

    def frames_of(self, num_frames: int) -> int:
        if num_frames != 5:
            raise ValueError(f"model.num_frames={num_frames}: ChronoEditPipeline generates 5 frames without temporal "
                             f"reasoning (the only mode video maps take: one frame count per call); set "
                             f"model.num_frames=5")
        return 5

    def call_options(self) -> dict:
        return {}


class SkyReelsV2Adapter(WanVideoAdapter):
    """SkyReels-V2 image-to-video: Wan 2.1's transformer and call under its own classes."""

    pipeline_class = "SkyReelsV2ImageToVideoPipeline"


ADAPTERS = {cls.pipeline_class: cls for cls in (WanVideoAdapter, ChronoEditAdapter, SkyReelsV2Adapter)}
