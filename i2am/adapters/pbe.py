"""Paint-by-Example: a 9-channel SD-1.x UNet conditioned on one CLIP image token.

UNet input: [noisy latent 4, latent of the masked image 4, mask 1] with PBE's mask convention (1 = keep).
Loads the original LDM ``model.ckpt`` (``pbe_ldm.json``) and diffusers-format folders component by component.
"""
from __future__ import annotations

from pathlib import Path

import torch

from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters._checkpoint import (
    SCHEDULE_BUFFER_KEYS,
    CheckpointError,
    LoadReport,
    compare,
    ldm_schedule_buffers,
    read_state_dict,
)
from i2am.adapters._components import (
    build_pbe_image_encoder,
    build_unet,
    build_vae,
    clip_pixels,
    on_device,
    resize_mask,
    resolve_component,
)
from i2am.adapters._convert import Rule, ldm_unet_rules, ldm_vae_rules, renamed
from i2am.adapters._registry import register_sizes
from i2am.adapters._unet_base import UNetAdapter
from i2am.data import schema

POSITION_IDS = "cond_stage_model.transformer.vision_model.embeddings.position_ids"
# LDM mapper (GLIDE ``Transformer``) block parts -> diffusers BasicTransformerBlock parts (as diffusers' own
# PaintByExample conversion maps them); c_qkv is split into q, k, v (1 head).
MAPPER_PARTS = {"attn.c_qkv": ("attn1.to_q", "attn1.to_k", "attn1.to_v"), "attn.c_proj": ("attn1.to_out.0",),
                "ln_1": ("norm1",), "ln_2": ("norm3",), "mlp.c_fc": ("ff.net.0.proj",), "mlp.c_proj": ("ff.net.2",)}
# diffusers folder layout: component -> accepted weight file names
DIFFUSERS_FILES = {"unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
                   "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
                   "image_encoder": ("model.safetensors", "pytorch_model.bin")}


def clip_image_encoder_rules(model_keys, num_mapper_blocks: int) -> list[Rule]:
    """``cond_stage_model.*``, ``proj_out``, ``learnable_vector`` <-> diffusers ``PaintByExampleImageEncoder``."""
    # transformers >= 5 dropped the ``vision_model.`` level inside CLIPVisionModel; the LDM file has it.
    nested = any(k.startswith("image_encoder.model.vision_model.") for k in model_keys)
    rules = renamed(model_keys, "image_encoder.model.",
                    "cond_stage_model.transformer." if nested else "cond_stage_model.transformer.vision_model.")
    for i in range(num_mapper_blocks):
        for ldm, parts in MAPPER_PARTS.items():
            for p in ("weight", "bias"):
                rules.append(Rule(f"cond_stage_model.mapper.resblocks.{i}.{ldm}.{p}",
                                  tuple(f"image_encoder.mapper.blocks.{i}.{part}.{p}" for part in parts)))
    for p in ("weight", "bias"):
        rules.append(Rule(f"cond_stage_model.final_ln.{p}", (f"image_encoder.final_layer_norm.{p}",)))
        rules.append(Rule(f"proj_out.{p}", (f"image_encoder.proj_out.{p}",)))
    rules.append(Rule("learnable_vector", ("image_encoder.uncond_vector",)))
    return rules


class PaintByExample(UNetAdapter):
    """components: per-component overrides of the size preset (``unet``, ``vae``, ``clip_vision``; see
    ``components.resolve_component``). reference_resize / mask_resize: how the reference reaches CLIP and the mask
    the latent grid (``components.RESIZES`` / ``MASK_RESIZES``); the defaults are the original's (docs/sampling.md)."""

    cfg_order = "uncond_cond"
    ignorable_keys = SCHEDULE_BUFFER_KEYS + (POSITION_IDS,)
    unet_in_channels = 9
    default_start_code = "noise"
    default_reference_resize = "pil_bicubic"     # scripts/inference.py: PIL Image.resize((224, 224)), bicubic

    def __init__(self, size: str = "full", device="cpu", guidance: float = 5.0,
                 image_size=(512, 512), num_steps: int = 50, components: dict | None = None,
                 start_code: str | None = None, reference_resize: str | None = None, mask_resize: str = "bilinear",
                 latent_encoding: str = "mode", encoding_seed: int = 0):
        super().__init__(size, guidance, image_size, start_code=start_code or self.default_start_code,
                         num_steps=num_steps, latent_encoding=latent_encoding, encoding_seed=encoding_seed)
        device = torch.device(device)
        components = components or {}
        self.reference_resize = reference_resize or self.default_reference_resize
        self.mask_resize = mask_resize
        proj = resolve_component("clip_vision", size, components.get("clip_vision"))["proj_size"]
        with on_device(device):
            self.unet = build_unet(size, components.get("unet"), in_channels=self.unet_in_channels,
                                   cross_attention_dim=proj)
            self.vae = build_vae(size, components.get("vae"))
            self.image_encoder = build_pbe_image_encoder(size, components.get("clip_vision"))
        if device.type != "meta":
            self.to(device)
        self.eval()

    # ---- conditioning ----------------------------------------------------------------------------------------
    def reference_tokens(self, reference: torch.Tensor) -> torch.Tensor:
        size = self.image_encoder.config.image_size
        pixels = clip_pixels(reference.to(self.device, self.dtype), size, self.reference_resize)
        return self.image_encoder(pixels)                                      # [B, 1, D]

    def inpaint_image(self, batch: dict, keep: torch.Tensor) -> torch.Tensor:
        """The image whose latent is the UNet's second input: the scene with the region to generate zeroed."""
        return batch[schema.IMAGE] * keep

    def start_image(self, image: torch.Tensor, inpaint: torch.Tensor) -> torch.Tensor:
        """The image a ``q_sample`` start code noises: PBE's script has none (it starts from noise); the scene."""
        return image

    def prepare(self, batch: dict) -> DenoiseInputs:
        image = batch[schema.IMAGE].to(self.device, self.dtype)
        keep = 1.0 - batch[schema.INPAINT_MASK].to(self.device, self.dtype)   # PBE: mask 1 = keep
        ids = sample_ids(batch)
        inpaint = self.inpaint_image({**batch, schema.IMAGE: image}, keep)
        inpaint_latent = self.encode_images(inpaint, ids, "inpaint")
        h, w = inpaint_latent.shape[-2:]
        context = self.reference_tokens(batch[schema.REFERENCE])
        uncond = self.image_encoder.uncond_vector.to(context.dtype).expand(context.shape[0], -1, -1)
        return DenoiseInputs(concat=torch.cat([inpaint_latent, resize_mask(keep, (h, w), self.mask_resize)], dim=1),
                             context=context, uncond_context=uncond, latent_shape=(4, h, w),
                             sample_ids=ids, start_image=self.start_image(image, inpaint))

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def original_rules(self) -> list[Rule]:
        keys = list(self.state_dict())
        return (ldm_unet_rules("model.diffusion_model.", "unet.") + ldm_vae_rules("first_stage_model.", "vae.")
                + clip_image_encoder_rules(keys, len(self.image_encoder.mapper.blocks)))

    def original_extras(self) -> dict[str, torch.Tensor]:
        return ldm_schedule_buffers()

    def load_diffusers_folder(self, folder, strict: bool = True) -> LoadReport:
        """A diffusers Paint-by-Example folder (``unet/``, ``vae/``, ``image_encoder/``), one component at a time."""
        folder, report = Path(folder), LoadReport()
        loaded = {}
        for component, names in DIFFUSERS_FILES.items():
            files = [folder / component / n for n in names if (folder / component / n).is_file()]
            if not files:
                raise CheckpointError(f"{folder / component}: no weights file (expected one of {list(names)})")
            module = getattr(self, component)
            expected = {k: v.shape for k, v in module.state_dict().items()}
            state = _match_vision_model_level(read_state_dict(files[0]), expected)
            part = compare(expected, state, {})
            report.missing += [f"{component}/{k}" for k in part.missing]
            report.mismatched += [(f"{component}/{k}", a, b) for k, a, b in part.mismatched]
            report.unexpected += [f"{component}/{k}" for k in state if k not in expected]
            loaded[component] = {k: v for k, v in state.items() if k in expected and v.shape == expected[k]}
        if strict and not report.ok:
            raise CheckpointError(f"{folder} does not fit {self.name or type(self).__name__}: {report.summary()}")
        self._assign({f"{c}.{k}": v for c, state in loaded.items() for k, v in state.items()})
        return report

    def save_diffusers_folder(self, folder) -> None:
        """Write ``unet/``, ``vae/`` (diffusers ``save_pretrained``) and ``image_encoder/`` (transformers)."""
        for component in DIFFUSERS_FILES:
            getattr(self, component).save_pretrained(Path(folder) / component)


def _match_vision_model_level(state: dict, expected: dict) -> dict:
    """Image-encoder files saved under transformers 4 nest CLIP under ``model.vision_model.``; 5 does not."""
    if any(k.startswith("model.vision_model.") for k in state) and not any(
            k.startswith("model.vision_model.") for k in expected):
        return {k.replace("model.vision_model.", "model.", 1): v for k, v in state.items()}
    return state


register_sizes("pbe", PaintByExample)
