"""FLUX.2: one set of reference images (PIL) per call; its latents are patchified (no 2x2 packing of the token
grid) and decoded through the VAE's batch-norm statistics."""
from __future__ import annotations

import torch

from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter, one_reference, pil_image


class Flux2Adapter(DiffusersTransformerAdapter):
    pipeline_class = "Flux2Pipeline"
    text_encoders = ("text_encoder", "tokenizer")

    def pipeline_inputs(self, inputs) -> dict:
        reference = one_reference(self.references(inputs), self.pipeline_class)
        return dict(image=[pil_image(reference)], prompt_embeds=inputs.extra["prompt_embeds"])

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        return self.transformer.config.in_channels, h, w

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        return x   # the pipeline takes the patchified latent grid as is

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """Row-major tokens [B, L, C] -> the patchified latents [B, C, h, w]."""
        h, w = self.token_grid(self.image_size)
        return latents.transpose(1, 2).reshape(latents.shape[0], latents.shape[2], h, w)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Batch-norm statistics of the patchified latents, then unpatchify."""
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(latents)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(latents)
        latents = self.pipe._unpatchify_latents(latents * std + mean)
        return self.vae.decode(latents.to(self.vae.dtype)).sample.clamp(-1, 1)
