"""The paper's custom try-on model: a 17-channel SD-1.5 UNet whose cross-attention reads DINOv2 patch tokens.

UNet input: [noisy 4, agnostic latent 4, DensePose latent 4, garment latent 4, inpainting mask 1 (1 = generate)].
Reference: DINOv2 ViT-g/14 patch tokens of the garment at 518x392 (37x28 = 1,036 tokens, CLS dropped) through a
4-block projector to 768; a learnable unconditional context [1, 1036, 768]; CFG batch [cond, uncond], guidance 5.
Loads the authors' Lightning layout (``custom_v2.json``) and this adapter's own (training) checkpoints.
"""
from __future__ import annotations

import torch
from torch import nn

from i2am.adapters import _custom_layout as custom_layout
from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters._components import (
    TokenProjector,
    build_dinov2,
    build_unet,
    build_vae,
    component_config,
    dinov2_pixels,
    on_device,
    resize_mask,
    resolve_component,
)
from i2am.adapters._convert import Rule
from i2am.adapters._registry import TOY_IMAGE_SIZE, register_model, register_sizes
from i2am.adapters._unet_base import UNetAdapter
from i2am.data import schema

NUM_ENCODER_LAYERS = 6   # cross-attention layers before the decoder (the mid block is not counted in LLAM)


class CustomTryOn(UNetAdapter):
    """Sampling defaults: the original's own DDIM (``samplers/custom_ddim.py``: 50 steps t = 999, 980, ..., 20,
    predicted-x0 return, the person latent re-noised and pasted outside the mask before every call), CFG 5.

    components: overrides of the size preset (``unet``, ``vae``, ``dinov2``; ``dinov2`` also takes ``image_size``,
    ``projector_blocks`` and ``context_dim``). reference_normalisation: "none" (the original feeds DINOv2 the
    [-1, 1] garment) or "imagenet". mask_resize: "nearest" (the original's ``F.interpolate``) or "bilinear".
    """

    cfg_order = "cond_uncond"

    def __init__(self, size: str = "full", device="cpu", guidance: float = 5.0,
                 image_size=(512, 384), num_steps: int = 50, components: dict | None = None,
                 reference_normalisation: str = "none", mask_resize: str = "nearest",
                 latent_encoding: str = "mode", encoding_seed: int = 0):
        super().__init__(size, guidance, image_size, start_code="noise", num_steps=num_steps,
                         latent_encoding=latent_encoding, encoding_seed=encoding_seed)
        self.sampler_defaults.update(scheduler="custom_ddim", paste=True)
        device = torch.device(device)
        components = components or {}
        self.reference_normalisation, self.mask_resize = reference_normalisation, mask_resize
        dino = resolve_component("dinov2", size, components.get("dinov2"))
        self.reference_size = tuple(dino["image_size"])
        patch = dino["config"]["patch_size"]
        self.token_grid = (self.reference_size[0] // patch, self.reference_size[1] // patch)
        with on_device(device):
            self.unet = build_unet(size, components.get("unet"), in_channels=17,
                                   cross_attention_dim=dino["context_dim"])
            self.vae = build_vae(size, components.get("vae"))
            self.dinov2 = build_dinov2(size, components.get("dinov2"))
            self.projector = TokenProjector(dino["config"]["hidden_size"], dino["context_dim"],
                                            dino["projector_blocks"])
            self.uncond_context = nn.Parameter(torch.randn(1, self.token_grid[0] * self.token_grid[1],
                                                           dino["context_dim"]))
        self.dinov2.requires_grad_(False)
        self.vae.requires_grad_(False)
        if device.type != "meta":
            self.to(device)
        self.eval()

    def reference_grid(self):
        return self.token_grid

    def default_sram_layers(self) -> tuple[str, ...]:
        """The paper's SRAM layer of the custom model: decoder cross-attention layer 2 (paper §5.5)."""
        return (self.decoder_layer_name(2),)

    def decoder_layer_name(self, k: int) -> str:
        """LayerSpec name of decoder cross-attention layer k (1-based, as in LLAM figures; "layer 2" = k=2)."""
        decoder = [s.name for s in self.attribution_layers() if s.name.startswith("up_blocks")]
        if not 1 <= k <= len(decoder):
            raise ValueError(f"decoder layer {k} out of range 1..{len(decoder)}")
        return decoder[k - 1]

    # ---- conditioning ----------------------------------------------------------------------------------------
    def reference_tokens(self, reference: torch.Tensor) -> torch.Tensor:
        """Garment [-1, 1] -> projected DINOv2 patch tokens [B, rows*cols, D] (CLS dropped, final LayerNorm kept)."""
        pixels = dinov2_pixels(reference.to(self.device, self.dtype), self.reference_size,
                               self.reference_normalisation)
        patches = self.dinov2(pixel_values=pixels).last_hidden_state[:, 1:]
        return self.projector(patches)

    def prepare(self, batch: dict) -> DenoiseInputs:
        ids = sample_ids(batch)
        agnostic = self.encode_images(batch[schema.AGNOSTIC], ids, "agnostic")
        densepose = self.encode_images(batch[schema.DENSEPOSE], ids, "densepose")
        garment = self.encode_images(batch[schema.REFERENCE], ids, "reference")
        h, w = agnostic.shape[-2:]
        mask = resize_mask(batch[schema.INPAINT_MASK].to(self.device, self.dtype), (h, w), self.mask_resize)
        context = self.reference_tokens(batch[schema.REFERENCE])
        return DenoiseInputs(concat=torch.cat([agnostic, densepose, garment, mask], dim=1), context=context,
                             uncond_context=self.uncond_context.expand(context.shape[0], -1, -1),
                             latent_shape=(4, h, w), sample_ids=ids,
                             start_image=batch[schema.IMAGE].to(self.device, self.dtype), paste_mask=mask)

    def training_eps(self, noisy_latents: torch.Tensor, t, inputs: DenoiseInputs, unconditional: bool = False
                     ) -> torch.Tensor:
        """One UNet forward for training: the conditional context, or the learnable unconditional one (the
        original drops the reference for the whole batch with p = 0.2)."""
        context = inputs.uncond_context if unconditional else inputs.context
        return self.predict_eps(noisy_latents, t, inputs.concat, context, inputs.extra)

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def original_rules(self) -> list[Rule]:
        return (custom_layout.unet_rules("unet.")
                + [Rule("diffusion.uncond_vector", ("uncond_context",))]
                + custom_layout.projector_rules("projector.", len(self.projector.blocks))
                + custom_layout.dinov2_rules("dinov2.model.", "dinov2.", self.dinov2.config.num_hidden_layers)
                + custom_layout.vae_rules("vae."))


register_sizes("custom", CustomTryOn)


@register_model("custom-toy")
def custom_toy(device="cpu", **overrides) -> CustomTryOn:
    """custom-tiny on a 4x finer latent grid (the 4x4 block-mean VAE ``tiny-f4``: 32x24 latents of 128x96 images),
    the three-level UNet preset ``toy`` (cross-attention at 16x12 and 8x6; decoder layers 3-4 attend from 16x12) and
    16x12 garment tokens (DINOv2 patch 7): the preset of the shipped toy checkpoints (docs/toy_world.md)."""
    components = dict(overrides.pop("components", None) or {})
    components["vae"] = {**component_config("vae", "tiny-f4"), **components.get("vae", {})}
    components["unet"] = {**component_config("unet", "toy"), **components.get("unet", {})}
    components["dinov2"] = {"patch_size": 7, **components.get("dinov2", {})}
    return CustomTryOn("tiny", device=device, components=components, **{"image_size": TOY_IMAGE_SIZE, **overrides})
