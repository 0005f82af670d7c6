"""FLUX.1 Kontext inpainting: the dataset's ``image`` is repainted inside its ``inpaint_mask`` (kept outside it by the
pipeline, which pastes the noised image back after every step) while the ``reference``'s latent tokens join the joint
attention (``image_reference``), so the maps relate the repainted person to the garment. Sampling starts from noise
(``strength=1``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter
from i2am.data import schema


class FluxKontextInpaintAdapter(DiffusersTransformerAdapter):
    pipeline_class = "FluxKontextInpaintPipeline"
    text_encoders = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "image_encoder",
                     "feature_extractor")
    _velocity_seen: torch.Tensor | None = None   # the transformer's velocity of the step in progress

    def prepare(self, batch: dict):
        """The person image and its inpainting mask at ``image_size`` ride in ``extra`` (the pipeline generates at
        its image's size)."""
        inputs = super().prepare(batch)
        size = tuple(self.image_size)
        image = batch[schema.IMAGE].to(self.device, torch.float32)
        mask = batch[schema.INPAINT_MASK].to(self.device, torch.float32)
        if tuple(image.shape[-2:]) != size:
            image = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
            mask = F.interpolate(mask, size=size, mode="nearest")
        inputs.extra.update(image=(image + 1) / 2, mask_image=mask)
        return inputs

    def pipeline_inputs(self, inputs) -> dict:
        height, width = self.image_size
        extra = inputs.extra
        return dict(image=extra["image"], mask_image=extra["mask_image"], image_reference=self.references(inputs),
                    strength=1.0, prompt_embeds=extra["prompt_embeds"],
                    pooled_prompt_embeds=extra.get("pooled_prompt_embeds"), max_area=height * width,
                    _auto_resize=False)

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        return x   # the inpainting pipeline packs its ``latents`` argument itself

    def _step_hooks(self, hooks) -> None:
        self._velocity_seen = None
        hooks.hook(self.transformer, self._remember_output, with_kwargs=True)

    def _remember_output(self, module, args, kwargs, output):
        if self._velocity_seen is None:   # the first (conditional) transformer call of a step
            self._velocity_seen = (output[0] if isinstance(output, tuple) else output.sample)[:, :self._tokens()]

    def _velocity(self, x, x_next, sigma, sigma_next) -> torch.Tensor:
        """The transformer's velocity (the pipeline pastes the noised image outside the mask after the Euler step,
        so the latents' change is not the velocity there)."""
        velocity, self._velocity_seen = self._velocity_seen, None
        return velocity.to(x.dtype)
