"""Qwen-Image-Edit: references as 8-bit PIL images resized inside the call to a fixed pixel area (1024x1024 unless
``model.reference_area``), a text padding mask, true CFG off; latents are one video frame with per-channel
statistics."""
from __future__ import annotations

import torch

from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter, pil_image
from i2am.adapters.diffusers.dit._prompts import read_prompt_mask

QWEN_EDIT_AREA = 1024 * 1024   # the pixel area QwenImageEditPipeline resizes its reference to


class QwenImageEditAdapter(DiffusersTransformerAdapter):
    pipeline_class = "QwenImageEditPipeline"
    text_encoders = ("text_encoder", "tokenizer", "processor")
    pipeline_module = "pipeline_qwenimage_edit"   # the module of diffusers.pipelines.qwenimage whose resize it swaps

    def _reference_area(self, reference_area: int | None) -> int | None:
        return None if reference_area is None else int(reference_area)

    def _text_buffers(self, path, embeds, pooled) -> dict[str, torch.Tensor]:
        return {"prompt_embeds_mask": read_prompt_mask(path, embeds)}

    def text_extra(self, n: int) -> dict[str, torch.Tensor]:
        return {**super().text_extra(n), "prompt_embeds_mask": self.prompt_embeds_mask.expand(n, -1)}

    def pipeline_inputs(self, inputs) -> dict:
        return dict(image=[pil_image(r) for r in self.references(inputs)], prompt_embeds=inputs.extra["prompt_embeds"],
                    prompt_embeds_mask=inputs.extra["prompt_embeds_mask"], true_cfg_scale=1.0)

    def reference_grid(self):
        """The token grid of the resized reference."""
        if self.relation == "text":
            return "row"
        height, width = self.reference_size
        area = self.reference_area or QWEN_EDIT_AREA
        width, height = self._module().calculate_dimensions(area, width / height)[:2]   # Plus: no third value
        return self.token_grid((height, width))

    def _module(self):
        import importlib

        return importlib.import_module(f"diffusers.pipelines.qwenimage.{self.pipeline_module}")

    def scope_call(self, hooks) -> None:
        """During the call: the pipeline resizes its reference to ``reference_area`` pixels instead of its fixed
        1024x1024 area. It reads that area from its module's ``calculate_dimensions`` (no argument sets it; a
        reference passed as latents skips the resize but breaks the pipeline's size read), so that function is
        swapped in the call's ``hooks``."""
        if self.reference_area is None:
            return
        module, area = self._module(), self.reference_area
        original = hooks.replace(module, "calculate_dimensions", lambda _area, ratio: original(area, ratio))

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, L, C] -> [B, C, 1 frame, H, W] -> [B, C, H, W]."""
        height, width = self.image_size
        return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)[:, :, 0]

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Per-channel statistics, one video frame."""
        config = self.vae.config
        mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        frames = (latents[:, :, None] * std + mean).to(self.vae.dtype)
        return self.vae.decode(frames, return_dict=False)[0][:, :, 0].clamp(-1, 1)
