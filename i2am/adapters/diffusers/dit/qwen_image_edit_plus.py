"""Qwen-Image-Edit Plus (2509, 2511): Qwen-Image-Edit's components with a list of references that condition the
whole call (one reference per call here: the dataset's); each reference is resized to a fixed pixel area inside the
call (1024x1024 unless ``model.reference_area``), as Qwen-Image-Edit does. The pipeline refuses a batch of prompts,
so the fixed text embedding (one for every sample) goes in once with ``num_images_per_prompt`` = the batch."""
from __future__ import annotations

from i2am.adapters.diffusers.dit._base import one_reference, pil_image
from i2am.adapters.diffusers.dit.qwen_image_edit import QwenImageEditAdapter


class QwenImageEditPlusAdapter(QwenImageEditAdapter):
    pipeline_class = "QwenImageEditPlusPipeline"
    pipeline_module = "pipeline_qwenimage_edit_plus"

    def pipeline_inputs(self, inputs) -> dict:
        references = self.references(inputs)
        reference = one_reference(references, self.pipeline_class)
        kwargs = super().pipeline_inputs(inputs)
        return dict(kwargs, image=[pil_image(reference)], prompt_embeds=kwargs["prompt_embeds"][:1],
                    prompt_embeds_mask=kwargs["prompt_embeds_mask"][:1], num_images_per_prompt=references.shape[0])
