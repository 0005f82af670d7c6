"""FLUX.1 Kontext: the reference's latent tokens join the joint attention; latents packed 2x2, decoded with the
VAE's scaling and shift."""
from __future__ import annotations

from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter


class FluxKontextAdapter(DiffusersTransformerAdapter):
    pipeline_class = "FluxKontextPipeline"
    text_encoders = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")

    def pipeline_inputs(self, inputs) -> dict:
        height, width = self.image_size
        return dict(image=self.references(inputs), prompt_embeds=inputs.extra["prompt_embeds"],
                    pooled_prompt_embeds=inputs.extra.get("pooled_prompt_embeds"), max_area=height * width,
                    _auto_resize=False)
