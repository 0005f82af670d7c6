"""LongCat-Image-Edit: FLUX.1's 2x2 packing and VAE scaling, the reference's latent tokens after the generated ones.
Its call has no height or width: it generates at, and resizes its reference to, a 1024x1024 area of the reference's
aspect ratio; it encodes the prompt (with the reference, through Qwen2.5-VL) even when given ``prompt_embeds``.
``scope_call`` swaps both for one call: the size becomes ``image_size``, the encoding the fixed embedding."""
from __future__ import annotations

import importlib

from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter, pil_image, report_steps_through_scheduler
from i2am.adapters.diffusers.dit.tiny import NoTextProcessor

PIPELINE_MODULE = "diffusers.pipelines.longcat_image.pipeline_longcat_image_edit"


def encode_embeddings(encode):
    """LongCat-Image-Edit's ``encode_prompt`` for given ``prompt_embeds``: its own (which repeats them per image and
    makes the text position ids), called with one empty prompt per embedding row, since diffusers 0.42's takes
    ``len(prompt)`` before it looks at ``prompt_embeds`` (and its call refuses a prompt given with them)."""
    def call(prompt=None, image=None, num_images_per_prompt=1, prompt_embeds=None):
        if prompt_embeds is None:
            raise ValueError("LongCatImageEditPipeline: no text encoder is run here, so its negative prompt cannot be "
                             "encoded; pass negative_prompt_embeds (or guidance_scale <= 1)")
        return encode(prompt=[""] * prompt_embeds.shape[0], image=image, num_images_per_prompt=num_images_per_prompt,
                      prompt_embeds=prompt_embeds)
    return call


class LongCatImageEditAdapter(DiffusersTransformerAdapter):
    pipeline_class = "LongCatImageEditPipeline"
    text_encoders = ("text_encoder", "tokenizer")
    guidance_is_cfg = True

    @classmethod
    def absent_components(cls) -> dict:
        """Also its Qwen2-VL processor: its constructor keeps the processor's image processor (a stand-in)."""
        return {**super().absent_components(), "text_processor": NoTextProcessor()}

    def text_widths(self) -> tuple[int, None]:
        return self.transformer.config.joint_attention_dim, None   # its config's pooled_projection_dim is unused

    def pipeline_inputs(self, inputs) -> dict:
        """8-bit PIL references (the call reads their ``size``), the fixed embedding, CFG off."""
        return dict(image=[pil_image(r) for r in self.references(inputs)], prompt_embeds=inputs.extra["prompt_embeds"],
                    guidance_scale=1.0)

    def _call_kwargs(self, inputs, settings) -> dict:
        kwargs = super()._call_kwargs(inputs, settings)
        del kwargs["height"], kwargs["width"]   # not arguments of its call: scope_call sets the size
        return kwargs

    def reference_grid(self):
        """The reference is resized to the generated size (``image_size``), whatever its own."""
        return "row" if self.relation == "text" else self.token_grid(self.image_size)

    def scope_call(self, hooks) -> None:
        """During the call: its module's ``calculate_dimensions`` (which turns the reference's aspect ratio into a
        1024x1024-area size) gives ``image_size``, so the image is generated there and the reference resized to it;
        ``encode_prompt`` takes the fixed embedding (``encode_embeddings``)."""
        height, width = self.image_size
        module = importlib.import_module(PIPELINE_MODULE)
        hooks.replace(module, "calculate_dimensions", lambda _area, _ratio: (width, height))
        hooks.replace(self.pipe, "encode_prompt", encode_embeddings(self.pipe.encode_prompt))

    def step_end_argument(self, hooks, on_step_end) -> dict:
        """Its call takes no step callback: the scheduler's ``step`` reports each step instead."""
        return report_steps_through_scheduler(hooks, self.pipe, on_step_end)
