"""Stable Diffusion 3: no reference image; its joint attention holds the generated image and the text, so its only
relation is "text". Real classifier-free guidance: above guidance 1 each transformer call stacks [negative,
positive] (the capture scores the positive rows, the knockout masks both). Latents are not packed (2x2 patches
inside the transformer)."""
from __future__ import annotations

import torch

from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter
from i2am.adapters.diffusers.dit._prompts import read_negative_embeds
from i2am.data import schema


class StableDiffusion3Adapter(DiffusersTransformerAdapter):
    pipeline_class = "StableDiffusion3Pipeline"
    text_encoders = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")
    default_relation = "text"

    def _check_relation(self, relation: str) -> None:
        if relation != "text":
            raise ValueError(f"model.relation={relation!r}: {self.pipeline_class} has no reference image (its joint "
                             f"attention holds the generated image and the text); its only relation is 'text'")

    def _text_buffers(self, path, embeds, pooled) -> dict[str, torch.Tensor]:
        negative, negative_pooled = read_negative_embeds(path, embeds, pooled)
        return {"negative_prompt_embeds": negative, "negative_pooled_prompt_embeds": negative_pooled}

    def patch_size(self) -> int:
        return self.transformer.config.patch_size

    def call_layout(self) -> str:
        """[negative, positive] where the pipeline call in progress guides (guidance_scale > 1)."""
        return "uncond_cond" if self.pipe.do_classifier_free_guidance else "none"

    def prepare(self, batch: dict) -> DenoiseInputs:
        """context: the text embedding; uncond_context: the negative one (the dataset's reference is not read)."""
        n = batch[schema.IMAGE].shape[0]
        h, w = self.token_grid(self.image_size)
        patch = self.patch_size()
        context = self.prompt_embeds.expand(n, -1, -1)
        extra = {"pooled_prompt_embeds": self.pooled_prompt_embeds.expand(n, -1),
                 "negative_prompt_embeds": self.negative_prompt_embeds.expand(n, -1, -1),
                 "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds.expand(n, -1)}
        return DenoiseInputs(concat=None, context=context, uncond_context=self.negative_prompt_embeds,
                             latent_shape=(self.transformer.config.in_channels, h * patch, w * patch),
                             sample_ids=sample_ids(batch), extra=extra, start_image=batch[schema.IMAGE])

    def pipeline_inputs(self, inputs) -> dict:
        """The text (and, where guidance_scale > 1, the negative text)."""
        extra = inputs.extra
        return dict(prompt_embeds=inputs.context, pooled_prompt_embeds=extra["pooled_prompt_embeds"],
                    negative_prompt_embeds=extra["negative_prompt_embeds"],
                    negative_pooled_prompt_embeds=extra["negative_pooled_prompt_embeds"])

    def transformer_timestep(self, t: float) -> float:
        return float(t)   # SD3 passes the scheduler timestep itself

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def _generated(self, output: torch.Tensor) -> torch.Tensor:
        return output   # a latent grid, no reference tokens

    def _step_input(self, like: torch.Tensor) -> torch.Tensor:
        """The first CFG chunk of the step's transformer input (the chunks are copies)."""
        return self._x[:like.shape[0]].to(like.dtype)
