"""``model=diffusers`` for LTX-2 image-to-video (``LTX2ImageToVideoPipeline``): ``TransformerVideoAdapter``'s
mechanisms (the pipeline's own call, the capture of one relation, the step callback, the refusals) on LTX-2's
transformer.

What differs from Wan 2.1: the reference is no separate conditioning but the clean latent frame 0 of the video
tokens, which the generated frames 1..F-1 read through every block's video self-attention (relation
"image:reference", ``i2am.engine.ltx2_layers``; "text": their cross-attention to the prompt tokens). The pipeline
packs the latents into tokens and steps frames 1..F-1 only; the adapter's latents are the pipeline's own
(normalised) ones unpacked to [B, C, F, h, w], frame 0 the reference's. The call runs CFG as stacked rows
[negative, positive] in one transformer call (the capture reads the second chunk), then, on the positive prompt, the
spatio-temporal-guidance and modality-isolation calls, which ``records_call`` skips. The audio stream is generated
alongside and not read. No text encoder is run: ``prompt_embeds`` [1, T, D] (D: the text encoder's stacked hidden
states the connectors read) with ``prompt_embeds_mask`` and ``negative_prompt_embeds`` from ``model.prompt_embeds``,
or zeros of ``LTX2_TEXT_TOKENS`` tokens (``encode_prompt``'s padded length) with a mask of ones. The reference is
handed over as is (``image_crf=0``: no H.264 re-compression, which needs PyAV and the text encoder to choose its
rate). ``guidance``: the video and the audio guidance scale (None: the call's defaults, 3 and 7).

The faithfulness check removes reference-frame tokens with ``i2am.engine.frame_knockout``; its proxy mode is not
defined (a one-step prediction would draw fresh audio noise), so ``predicts_x0`` is False and the startup check
leaves it out.
"""
from __future__ import annotations

import torch

from i2am.adapters.diffusers.dit._prompts import read_negative_embeds, read_prompt_embeds, read_prompt_mask
from i2am.adapters.diffusers.video.transformer import TransformerVideoAdapter
from i2am.engine.frame_knockout import ReferenceFrameKnockout
from i2am.engine.hooks import Hooks
from i2am.engine.layers import LayerSpec
from i2am.engine.ltx2_layers import GENERATED_FRAMES, latent_grid, ltx2_layer_specs, unperturbed_call

LTX2_TEXT_TOKENS = 1024   # encode_prompt pads the prompt to max_sequence_length=1024


class LTX2VideoAdapter(TransformerVideoAdapter):
    """``LTX2ImageToVideoPipeline`` (module docstring)."""

    pipeline_class = "LTX2ImageToVideoPipeline"
    blocks_attr = "transformer_blocks"
    predicts_x0 = False
    packed_latent_grid = staticmethod(latent_grid)

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(512, 768),
                 num_frames: int = 121, num_steps: int = 30, relation: str | None = None,
                 prompt_embeds: str | None = None):
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation, prompt_embeds)

    def layer_specs(self) -> list[LayerSpec]:
        return ltx2_layer_specs(self.transformer)

    @property
    def temporal_ratio(self) -> int:
        return int(self.pipe.vae_temporal_compression_ratio)

    @property
    def spatial_ratio(self) -> int:
        return int(self.pipe.vae_spatial_compression_ratio)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def patch(self) -> tuple[int, int, int]:
        config = self.transformer.config
        return int(config.patch_size_t), int(config.patch_size), int(config.patch_size)

    def _set_prompt_embeds(self, prompt_embeds: str | None) -> None:
        connectors = self.pipe.connectors.config
        width = connectors.caption_channels * connectors.text_proj_in_factor
        embeds, _ = read_prompt_embeds(prompt_embeds, LTX2_TEXT_TOKENS, width, None)
        negative, _ = read_negative_embeds(prompt_embeds, embeds, None)
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative, persistent=False)
        self.register_buffer("prompt_mask", read_prompt_mask(prompt_embeds, embeds), persistent=False)

    def prompt_kwargs(self, n: int) -> dict:
        mask = self.prompt_mask.expand(n, -1)
        return dict(prompt_embeds=self.prompt_embeds.expand(n, -1, -1), prompt_attention_mask=mask,
                    negative_prompt_embeds=self.negative_prompt_embeds.expand(n, -1, -1),
                    negative_prompt_attention_mask=mask)

    def call_options(self) -> dict:
        return {**super().call_options(), "image_crf": 0}

    def call_image(self, image, n: int):
        return [image] * n   # the pipeline encodes one image per row

    def guidance_kwargs(self, guidance: float) -> dict:
        return {"guidance_scale": guidance, "audio_guidance_scale": guidance}

    def cfg_layout_for(self, guidance) -> str:
        """Stacked CFG rows [negative, positive] in one call while a guidance scale exceeds 1 (the call's defaults
        do)."""
        return "uncond_cond" if guidance is None or float(guidance) > 1.0 else "none"

    def video_meta(self) -> dict:
        return {**super().video_meta(), "first_latent_frame": GENERATED_FRAMES[0]}

    def knockout(self, layers=None) -> ReferenceFrameKnockout:
        return ReferenceFrameKnockout(self.transformer, layers=layers)

    def conditioning_stages(self) -> list[tuple[str, list]]:
        """The text connectors (its reference has no encoder of its own: it is the VAE latent of frame 0)."""
        return [("connectors", [self.pipe.connectors])]

    # ---- the pipeline's packed latents -------------------------------------------------------------------------
    def as_video(self, latents: torch.Tensor) -> torch.Tensor:
        frames, height, width = ((self.num_frames - 1) // self.temporal_ratio + 1,
                                 *(side // self.spatial_ratio for side in self.image_size))
        return self.pipe._unpack_latents(latents, frames, height, width, self.pipe.transformer_spatial_patch_size,
                                         self.pipe.transformer_temporal_patch_size)

    def from_output(self, latents: torch.Tensor) -> torch.Tensor:
        """The call's output latents are denormalised for the VAE: back to the step latents' space."""
        vae = self.vae
        return self.pipe._normalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)

    def _watch_calls(self, hooks: Hooks) -> None:
        """``records_call``: whether the transformer call is the step's unperturbed one (its arguments say), set
        before the capture's own hook reads it; the latents the step starts from are that call's first rows, before
        CFG stacked them."""
        def before_call(module, args, kwargs):
            self.records_call = unperturbed_call(kwargs)
            if self.records_call:
                hidden = kwargs["hidden_states"]
                rows = hidden.shape[0] // (2 if self.pipe.do_classifier_free_guidance else 1)
                self._x = self.as_video(hidden[:rows]).float()

        self.records_call = True
        hooks.hook(self.transformer, before_call, pre=True, with_kwargs=True, prepend=True)   # before the capture's

    def predict_x0(self, x, t, inputs, guidance=None, alpha_cumprod=None):
        raise NotImplementedError(f"{self.pipeline_class}: no one-step x0 prediction (the call draws fresh audio "
                                  f"noise); use evaluators.faithfulness.modes=[full]")

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, F, h, w] -> the video [B, 3, T, H, W] in [-1, 1], as the pipeline decodes them (decode
        timestep 0, no decode noise)."""
        vae = self.vae
        latents = self.pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std,
                                                 vae.config.scaling_factor).to(vae.dtype)
        timestep = (torch.zeros(latents.shape[0], device=latents.device, dtype=latents.dtype)
                    if vae.config.timestep_conditioning else None)
        return vae.decode(latents, timestep, return_dict=False)[0].clamp(-1, 1)
