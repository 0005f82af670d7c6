"""The pipeline kinds ``model=diffusers`` runs in the attribute loop: one row per diffusers pipeline class saying how a
dataset batch (``image``, ``inpaint_mask``, ``reference``) becomes the denoiser's inputs (docs/pipelines.md,
"model=diffusers").

    concat      channels appended to the noisy latent: "example" [scene latent, keep mask] (Paint-by-Example),
                "inpaint" [inpaint mask, scene latent], "image" the unscaled latent of the whole image
                (InstructPix2Pix; its unconditional chunk gets zeros); the scene is the image outside the mask.
    context     "example": the reference's CLIP image token; "clip": the prompt through the text encoder; "sdxl":
                both SDXL text encoders (penultimate hidden states) plus the added conditions ``text_embeds``
                (pooled) and ``time_ids`` from the pipeline's own ``_get_add_time_ids``.
    start_code  "q_sample": img2img, the image noised to the first timestep of the last ``strength`` part of the
                schedule (``Sampler.strength``); else "noise".
    control     a ControlNet, whose control image is the kept scene (the image outside the inpaint mask, the mask
                region black) in [0, 1].
    chunks      CFG chunks of one denoiser call: 2 is [uncond, cond]; 3 is InstructPix2Pix's [text + image, image
                only, unconditional] with its two guidance scales.
The reference enters through an IP-Adapter (relation "image:ip_adapter"), Paint-by-Example's image token, or
reference attention (``model.reference_attention``, relation "image:reference").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from i2am.engine.cfg_rows import split_cfg


@dataclass(frozen=True)
class Kind:
    name: str
    concat: str | None = None
    context: str = "clip"
    start_code: str = "noise"
    control: bool = False
    chunks: int = 2

    @property
    def in_channels(self) -> int:
        """The UNet's input channels: the 4 latent channels plus the appended ones."""
        return 4 + {None: 0, "example": 5, "inpaint": 5, "image": 4}[self.concat]

    @property
    def takes_reference_attention(self) -> bool:
        """Reference attention writes the reference latent through a copy of the UNet: a 4-channel UNet without
        added conditions."""
        return self.concat is None and self.context == "clip" and not self.control


KINDS = {
    "PaintByExamplePipeline": Kind("example", concat="example", context="example"),
    "StableDiffusionPipeline": Kind("text2img"),
    "StableDiffusionImg2ImgPipeline": Kind("img2img", start_code="q_sample"),
    "StableDiffusionInpaintPipeline": Kind("inpaint", concat="inpaint"),
    "StableDiffusionXLPipeline": Kind("sdxl", context="sdxl"),
    "StableDiffusionControlNetPipeline": Kind("controlnet", control=True),
    "StableDiffusionInstructPix2PixPipeline": Kind("pix2pix", concat="image", chunks=3),
}

# Per chunk count: which chunks take the conditional text-side inputs (context, IP embeds, pooled text) and which
# the conditional image (the appended channels); the conditional chunk for the maps is cfg_rows.CONDITIONAL_CHUNK.
CHUNK_LAYOUTS = {1: ((True, True),), 2: ((False, True), (True, True)),
                 3: ((True, True), (False, True), (False, False))}


def guide(eps: torch.Tensor, chunks: int, guidance: float, image_guidance: float) -> torch.Tensor:
    """The guided noise prediction of a ``chunks``-chunk denoiser output."""
    if chunks == 1:
        return eps
    if chunks == 2:
        cond, uncond = split_cfg(eps, "uncond_cond")
        return uncond + guidance * (cond - uncond)
    text, image, uncond = eps.chunk(3)
    return uncond + guidance * (text - image) + image_guidance * (image - uncond)


def chunk_count(kind: Kind, guidance, image_guidance: float) -> int:
    """Chunks of a call at this guidance: InstructPix2Pix guides (3 chunks) when guidance > 1 and image guidance
    >= 1, as its pipeline does; the others when guidance is neither None nor 1."""
    if guidance is None:
        return 1
    if kind.chunks == 3:
        return 3 if float(guidance) > 1.0 and float(image_guidance) >= 1.0 else 1
    return 1 if float(guidance) == 1.0 else 2


def stack(cond: torch.Tensor, uncond: torch.Tensor | None, picks) -> torch.Tensor:
    """The chunks of one input: ``cond`` where the layout picks the conditional value, else ``uncond``."""
    return torch.cat([cond if pick else uncond for pick in picks])
