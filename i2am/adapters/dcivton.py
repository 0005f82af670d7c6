"""DCI-VTON: the Paint-by-Example architecture on VITON-HD (512x384) whose inpainting input carries the garment
warped by DCI-VTON's appearance-flow network (docs/method.md §7). Loads ``viton512.ckpt`` (PBE keys + ``vgg.*``; the VGG
of its perceptual loss is accepted and reported as ignored)."""
from __future__ import annotations

import torch

from i2am.adapters._registry import register_sizes
from i2am.adapters.pbe import PaintByExample
from i2am.data import schema


class DCIVTON(PaintByExample):
    """Sampling defaults (docs/sampling.md): DDIM 50, no CFG, start code q_sample(z, 999) of the warp-pasted image
    (its test script's guidance and start code; its PLMS 100 steps are ``sampler=dcivton_release``)."""

    ignorable_keys = PaintByExample.ignorable_keys + ("vgg.*",)
    default_start_code = "q_sample"
    default_reference_resize = "tensor_bilinear"   # cp_dataset.py: transforms.Resize((224, 224)) on a tensor

    def __init__(self, size: str = "full", device="cpu", guidance: float = 1.0, **kwargs):
        super().__init__(size, device=device, guidance=guidance, **kwargs)

    def start_image(self, image: torch.Tensor, inpaint: torch.Tensor) -> torch.Tensor:
        """test.py noises the latent of ``warp_feat``: the person with the warped garment pasted in the mask."""
        return inpaint

    def inpaint_image(self, batch: dict, keep: torch.Tensor) -> torch.Tensor:
        """The person with the try-on region removed and the warped garment pasted in (where the batch has it)."""
        image = batch[schema.IMAGE] * keep
        if schema.CLOTH_WARP not in batch:
            return image
        warp = batch[schema.CLOTH_WARP].to(image)
        warp_mask = batch.get(schema.CLOTH_WARP_MASK, torch.ones_like(warp[:, :1])).to(image) * (1.0 - keep)
        return image * (1.0 - warp_mask) + warp * warp_mask


register_sizes("dcivton", DCIVTON, {"image_size": (512, 384)})
