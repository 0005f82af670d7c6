"""``model=diffusers``: a diffusers pipeline from a local folder as an i2am adapter, so ``i2am attribute`` and its
evaluators run on it with the same loop as the native families.

    i2am attribute model=diffusers model.pipeline=PaintByExamplePipeline model.path=/models/pbe data=cocoee
    i2am attribute model=diffusers model.pipeline=StableDiffusionInpaintPipeline model.path=/models/sd-inpaint \\
        model.ip_adapter.path=/models/ip-adapter model.ip_adapter.weight_name=ip-adapter_sd15.bin

``model.path`` is a local folder or a hub id ``<org>/<name>`` (``model_path.resolve_model_path``: the local cache, or a
download when online); the folder is read with ``<pipeline>.from_pretrained(folder, local_files_only=True)``. The
adapter reuses the pipeline's modules and samples with i2am's ``Sampler``; the layers it exposes are the key
streams ``i2am.trace`` finds (``i2am.engine.pipelines``) of one relation (``model.relation``; default the
image relation: "image:example" for Paint-by-Example, "image:ip_adapter" when an IP-Adapter is loaded, else "text").

The kinds (dataset batch -> UNet inputs, one row per pipeline class) are the table ``diffusers_kinds.KINDS``;
docs/pipelines.md lists them with the evaluators each runs. Reference attention (``model.reference_attention``)
adds a copy of the UNet as the reference network (``i2am.adapters.diffusers.reference_attention``) to a text2img or
img2img kind; the reference image, resized to the image size, is written once per denoiser call at timestep 0.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from i2am.adapters._anatomy import denoiser_stages
from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters._components import clip_pixels, resize_images, resize_mask
from i2am.adapters._registry import register_model
from i2am.adapters._unet_base import UNetAdapter
from i2am.adapters.diffusers.dit.transformer import diffusers_dit, is_transformer_pipeline
from i2am.adapters.diffusers.kinds import CHUNK_LAYOUTS, KINDS, chunk_count, guide, stack
from i2am.adapters.diffusers.model_path import resolve_model_path
from i2am.adapters.diffusers.reference_attention import ReferenceAttention
from i2am.adapters.diffusers.tiny import build_pipeline
from i2am.adapters.diffusers.video.model import is_video_pipeline, video_pipeline
from i2am.data import schema
from i2am.engine.cfg_rows import CONDITIONAL_CHUNK, chunk_rows
from i2am.engine.pipelines import layer_specs

RELATION_PRIORITY = ("image:example", "image:reference", "image:ip_adapter")   # the default model.relation
# conditional extra inputs and their unconditional counterparts (the rest is the same in every CFG chunk)
UNCOND_EXTRA = {"ip": "ip_uncond", "text_embeds": "text_embeds_uncond"}


def load_pipeline(pipeline: str, path: str | Path, ip_adapter: dict | None = None):
    """``<pipeline>.from_pretrained`` from a local folder or a hub id's snapshot, with an optional local IP-Adapter."""
    import diffusers

    cls = getattr(diffusers, pipeline, None)
    if cls is None:
        raise ValueError(f"model.pipeline={pipeline!r} is not a diffusers pipeline class")
    folder = resolve_model_path(path)   # a local folder, or a hub id's cached snapshot
    if pipeline == "PaintByExamplePipeline":
        pipe = _paint_by_example(cls, folder)
    else:
        expected, _ = cls._get_signature_keys(cls)   # components the folder lacks (no tokenizer, ...) are None
        absent = {name: None for name in expected if not (folder / name).is_dir()}
        pipe = cls.from_pretrained(str(folder), local_files_only=True, **{"safety_checker": None, **absent})
    if ip_adapter and ip_adapter.get("path"):
        pipe.load_ip_adapter(ip_adapter["path"], subfolder=ip_adapter.get("subfolder") or "",
                             weight_name=ip_adapter["weight_name"], local_files_only=True)
    return pipe


def _paint_by_example(cls, folder: Path):
    """Component by component: diffusers >= 0.33 moved the image encoder under ``pipelines.deprecated``, where a
    folder's model_index.json can no longer name it."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    def need(name):
        if not (folder / name).is_dir():
            raise FileNotFoundError(f"{folder}: no {name}/ component folder (a PaintByExamplePipeline folder has "
                                    f"unet/, vae/, image_encoder/, scheduler/)")
        return str(folder / name)

    scheduler_config = json.loads((Path(need("scheduler")) / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
    extractor = folder / "feature_extractor"
    return cls(vae=AutoencoderKL.from_pretrained(need("vae"), local_files_only=True),
               image_encoder=PaintByExampleImageEncoder.from_pretrained(need("image_encoder"), local_files_only=True),
               unet=UNet2DConditionModel.from_pretrained(need("unet"), local_files_only=True), scheduler=scheduler,
               safety_checker=None, feature_extractor=CLIPImageProcessor.from_pretrained(str(extractor))
               if extractor.is_dir() else CLIPImageProcessor())


class ControlledUNet(nn.Module):
    """The step module of a ControlNet kind: the ControlNet's residuals, then the UNet (one denoising step, so the
    capture's and the knockout's step hooks see the latent once per step)."""

    def __init__(self, controlnet: nn.Module, unet: nn.Module):
        super().__init__()
        object.__setattr__(self, "nets", (controlnet, unet))   # owned by the adapter, not registered twice

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, added_cond_kwargs=None):
        controlnet, unet = self.nets
        down, mid = controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                               controlnet_cond=controlnet_cond, return_dict=False)
        return unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs,
                    down_block_additional_residuals=down, mid_block_additional_residual=mid)


class DiffusersPipelineAdapter(UNetAdapter):
    cfg_order = "uncond_cond"   # diffusers stacks [negative, positive]
    loads_checkpoints = False

    def __init__(self, pipe, size: str = "full", guidance: float = 5.0, image_size=(512, 512), num_steps: int = 50,
                 relation: str | None = None, prompt: str = "", strength: float = 0.75, image_guidance: float = 1.5,
                 reference_attention: bool = False):
        self.pipeline_class = type(pipe).__name__
        if self.pipeline_class not in KINDS:
            raise ValueError(f"model=diffusers runs {sorted(KINDS)} through the attribute loop; got "
                             f"{self.pipeline_class} (trace other pipelines with i2am.trace, docs/pipelines.md)")
        self.kind = KINDS[self.pipeline_class]
        super().__init__(size, guidance, image_size, start_code=self.kind.start_code, num_steps=num_steps)
        if self.kind.start_code == "q_sample":
            self.sampler_defaults["strength"] = float(strength)
        self.image_guidance = float(image_guidance)
        self.pipe = pipe
        self.unet, self.vae = pipe.unet, pipe.vae
        self.image_encoder = getattr(pipe, "image_encoder", None)
        self.text_encoder = getattr(pipe, "text_encoder", None)
        self.text_encoder_2 = getattr(pipe, "text_encoder_2", None)
        self.controlnet = getattr(pipe, "controlnet", None) if self.kind.control else None
        self._controlled = ControlledUNet(self.controlnet, self.unet) if self.controlnet is not None else None
        self.latent_scale = float(self.vae.config.get("scaling_factor", 0.18215))
        self.prompt = prompt
        self.reference = None
        if reference_attention:
            self._add_reference_attention()
        self._specs = layer_specs(pipe)
        found = list(dict.fromkeys(s.relation for s in self._specs))
        self.relation = relation or next((r for r in RELATION_PRIORITY if r in found), "text")
        if self.relation not in found:
            raise ValueError(f"model.relation={self.relation!r}: {self.pipeline_class} has the relations {found}")
        if self.kind.context != "example" and self.image_encoder is None and self.relation.startswith("image:ip"):
            raise ValueError(f"{self.pipeline_class}: the IP-Adapter needs the pipeline's image_encoder")
        self._call_chunks = 1
        self.eval()

    def _add_reference_attention(self) -> None:
        if not self.kind.takes_reference_attention:
            raise ValueError(f"model.reference_attention=true: {self.pipeline_class} ({self.kind.name}) cannot take "
                             f"it; reference attention runs on the text2img and img2img kinds (a 4-channel UNet "
                             f"without added conditions, copied as the reference network)")
        if getattr(self.unet, "encoder_hid_proj", None) is not None:
            raise ValueError("model.reference_attention=true with an IP-Adapter loaded: choose one reference path "
                             "(set model.ip_adapter.kind=null / path=null)")
        self.reference_unet = copy.deepcopy(self.unet)
        self.reference = ReferenceAttention(self.unet, self.reference_unet)

    # ---- what the attribution engine reads -------------------------------------------------------------------
    @property
    def step_module(self) -> nn.Module:
        return self._controlled if self._controlled is not None else self.unet

    def randomization_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The randomisation check's stages, output side first: the UNet's, then (ControlNet kinds) the ControlNet,
        whose residuals enter the UNet's skip connections."""
        stages = denoiser_stages(self.unet)
        return stages + [("controlnet", [self.controlnet])] if self.controlnet is not None else stages

    def attribution_layers(self):
        return [s for s in self._specs if s.relation == self.relation]

    def layer_level(self, name: str) -> int:
        return super().layer_level(name.split("/", 1)[1])

    def conditional_slice(self, batch: int, layout: str) -> slice:
        """The conditional rows of a denoiser batch of the ``denoise`` call in progress (1, 2 or 3 chunks; the
        chunk count of the call decides, not ``layout``)."""
        return chunk_rows(batch, self._call_chunks, CONDITIONAL_CHUNK[self._call_chunks])

    # ---- conditioning ----------------------------------------------------------------------------------------
    def _token_ids(self, tokenizer, config, prompt: str) -> torch.Tensor:
        length = tokenizer.model_max_length if tokenizer is not None else config.max_position_embeddings
        if tokenizer is not None:
            return tokenizer(prompt, padding="max_length", max_length=length, truncation=True,
                             return_tensors="pt").input_ids.to(self.device)
        if prompt:
            raise ValueError(f"{self.pipeline_class} has no tokenizer for the prompt {prompt!r}")
        return torch.tensor([[config.bos_token_id] + [config.eos_token_id] * (length - 1)], device=self.device)

    def _text(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        encoder, tokenizer = self.text_encoder, getattr(self.pipe, "tokenizer", None)
        encode = lambda p: encoder(self._token_ids(tokenizer, encoder.config, p))[0].expand(batch, -1, -1)
        return encode(self.prompt), encode("")

    def _text_sdxl(self, batch: int, image_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """SDXL's two text encoders as its ``encode_prompt`` combines them (penultimate hidden states side by side,
        the second encoder's pooled output), zeros for the empty negative prompt where the pipeline's
        ``force_zeros_for_empty_prompt`` says so, and the added time ids from ``_get_add_time_ids``."""
        encoders = [(self.text_encoder, getattr(self.pipe, "tokenizer", None)),
                    (self.text_encoder_2, getattr(self.pipe, "tokenizer_2", None))]

        def encode(prompt):
            hidden, pooled = [], None
            for encoder, tokenizer in encoders:
                out = encoder(self._token_ids(tokenizer, encoder.config, prompt), output_hidden_states=True)
                hidden.append(out.hidden_states[-2])
                pooled = out[0]
            return torch.cat(hidden, dim=-1).expand(batch, -1, -1), pooled.expand(batch, -1)

        context, pooled = encode(self.prompt)
        if self.pipe.config.get("force_zeros_for_empty_prompt", True):
            uncond, pooled_uncond = torch.zeros_like(context), torch.zeros_like(pooled)
        else:
            uncond, pooled_uncond = encode("")
        time_ids = self.pipe._get_add_time_ids(tuple(image_hw), (0, 0), tuple(image_hw), dtype=context.dtype,
                                               text_encoder_projection_dim=self.text_encoder_2.config.projection_dim)
        extra = {"text_embeds": pooled, "text_embeds_uncond": pooled_uncond,
                 "time_ids": time_ids.to(self.device).expand(batch, -1)}
        return context, uncond, extra

    def _ip_embeds(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.models.embeddings import IPAdapterPlusImageProjection

        pixels = clip_pixels(reference.to(self.device, self.dtype), self.image_encoder.config.image_size)
        plus = isinstance(self.unet.encoder_hid_proj.image_projection_layers[0], IPAdapterPlusImageProjection)
        if plus:   # IP-Adapter Plus reads the penultimate hidden states (unconditional: those of a black image)
            hidden = lambda x: self.image_encoder(x, output_hidden_states=True).hidden_states[-2][:, None]
            return hidden(pixels), hidden(torch.zeros_like(pixels))
        cond = self.image_encoder(pixels).image_embeds[:, None]
        return cond, torch.zeros_like(cond)

    def prepare(self, batch: dict) -> DenoiseInputs:
        image = batch[schema.IMAGE].to(self.device, self.dtype)
        mask = batch[schema.INPAINT_MASK].to(self.device, self.dtype)          # 1 = region to generate
        keep = 1.0 - mask
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        h, w = image.shape[-2] // factor, image.shape[-1] // factor
        extra, concat, kind = {}, None, self.kind
        if kind.context == "example":
            size = self.image_encoder.config.image_size
            context = self.image_encoder(clip_pixels(batch[schema.REFERENCE].to(self.device, self.dtype), size))
            uncond = self.image_encoder.uncond_vector.to(context.dtype).expand(context.shape[0], -1, -1)
        elif kind.context == "sdxl":
            context, uncond, extra = self._text_sdxl(image.shape[0], tuple(image.shape[-2:]))
        else:
            context, uncond = self._text(image.shape[0])
        if kind.concat == "example":
            concat = torch.cat([self.encode_images(image * keep), resize_mask(keep, (h, w))], dim=1)
        elif kind.concat == "inpaint":
            concat = torch.cat([resize_mask(mask, (h, w)), self.encode_images(image * keep)], dim=1)
        elif kind.concat == "image":   # InstructPix2Pix: the unscaled posterior mode, zeros when unconditional
            concat = self.vae.encode(image).latent_dist.mode()
            extra["concat_uncond"] = torch.zeros_like(concat)
        if kind.control:
            extra["control"] = (image * keep + 1) / 2 * keep
        if kind.context != "example" and getattr(self.unet, "encoder_hid_proj", None) is not None:
            extra["ip"], extra["ip_uncond"] = self._ip_embeds(batch[schema.REFERENCE])
        if self.reference is not None:
            reference = resize_images(batch[schema.REFERENCE].to(self.device, self.dtype), tuple(image.shape[-2:]),
                                      "bilinear_antialias")
            extra["reference_latent"] = self.encode_images(reference)
        return DenoiseInputs(concat=concat, context=context, uncond_context=uncond, latent_shape=(4, h, w),
                             sample_ids=sample_ids(batch), extra=extra, start_image=image)

    def null_inputs(self, inputs: DenoiseInputs) -> DenoiseInputs:
        """``inputs`` with the attributed relation's conditioning removed (the R2G ``null`` counterfactual): the
        unconditional context (text, example token), zero IP image embeds, or no reference tokens at all."""
        extra = dict(inputs.extra)
        if self.relation.startswith("image:ip_adapter"):
            extra["ip"] = extra["ip_uncond"]
            return dataclasses.replace(inputs, extra=extra)
        if self.relation == "image:reference":
            extra.pop("reference_latent", None)
            return dataclasses.replace(inputs, extra=extra)
        return dataclasses.replace(inputs, context=inputs.uncond_context.expand_as(inputs.context).clone())

    # ---- denoising -------------------------------------------------------------------------------------------
    def predict_eps(self, x, t, concat, context, extra: dict) -> torch.Tensor:
        """One call of the step module on an already CFG-batched input."""
        added = {}
        if "ip" in extra:
            added["image_embeds"] = [extra["ip"]]
        if "text_embeds" in extra:
            added["text_embeds"], added["time_ids"] = extra["text_embeds"], extra["time_ids"]
        sample = x if concat is None else torch.cat([x, concat], dim=1)
        if self._controlled is not None:
            return self._controlled(sample, t, context, extra["control"], added_cond_kwargs=added or None).sample
        return self.unet(sample, t, encoder_hidden_states=context, added_cond_kwargs=added or None).sample

    def denoise(self, x_t, t, inputs: DenoiseInputs, guidance: float | None = None) -> torch.Tensor:
        """One denoiser call on the kind's CFG chunks (``diffusers_kinds.CHUNK_LAYOUTS``) and its guidance."""
        guidance = self.guidance if guidance is None else guidance
        chunks = chunk_count(self.kind, guidance, self.image_guidance)
        self._call_chunks = chunks
        layout = CHUNK_LAYOUTS[chunks]
        text_side, image_side = [p[0] for p in layout], [p[1] for p in layout]
        if self.reference is not None:
            latent = inputs.extra.get("reference_latent")
            if latent is None:
                self.reference.write_none()
            else:
                self.reference.write(latent, inputs.context)
        extra = {}
        for key, value in inputs.extra.items():
            if key in UNCOND_EXTRA:
                extra[key] = stack(value, inputs.extra[UNCOND_EXTRA[key]], text_side)
            elif key not in UNCOND_EXTRA.values() and key not in ("concat_uncond", "reference_latent"):
                extra[key] = torch.cat([value] * chunks)
        concat = None if inputs.concat is None else stack(inputs.concat, inputs.extra.get("concat_uncond"),
                                                          image_side)
        context = stack(inputs.context, inputs.uncond_context, text_side)
        eps = self.predict_eps(torch.cat([x_t] * chunks), t, concat, context, extra)
        return guide(eps, chunks, guidance, self.image_guidance)

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False):
        raise CheckpointError(f"model=diffusers loads its weights from model.path (a diffusers folder), not {source}")


def _adapter(pipe, size, device, **settings):
    adapter = DiffusersPipelineAdapter(pipe, size, **settings)
    return adapter if torch.device(device).type == "meta" else adapter.to(device)


@register_model("diffusers")
def diffusers_pipeline(device="cpu", pipeline: str = "PaintByExamplePipeline", path: str | None = None,
                       ip_adapter: dict | None = None, guidance: float = 5.0, image_size=(512, 512),
                       num_steps: int = 50, relation: str | None = None, prompt: str = "", strength: float = 0.75,
                       image_guidance: float = 1.5, reference_attention: bool = False, **transformer_options):
    """A local diffusers folder; ``path=None`` builds the architecture at full size with random weights (e.g. on
    ``device="meta"`` for layout checks). ``transformer_options``: the options of ``model=diffusers-dit``
    (``+model.reference_area=...``, ``+model.prompt_embeds=...``) for diffusion-transformer pipelines, and those of
    ``model=diffusers-video-tiny`` (``+model.num_frames=...``, ``+model.prompt_embeds=...``) for image-to-video ones."""
    if is_video_pipeline(pipeline):   # Wan 2.1 image-to-video & co.: i2am/adapters/diffusers/video/model.py
        if reference_attention:
            raise ValueError(f"model.reference_attention=true is for UNet pipelines, not {pipeline}")
        return video_pipeline(device, pipeline, path, guidance, image_size, num_steps=num_steps, relation=relation,
                              ip_adapter=ip_adapter, prompt=prompt, **transformer_options)
    if is_transformer_pipeline(pipeline):   # FLUX.1 Kontext & co.: i2am/adapters/diffusers/dit/transformer.py
        return diffusers_dit(device, pipeline, path, guidance, image_size, num_steps, relation, ip_adapter=ip_adapter,
                             prompt=prompt, **transformer_options)
    if transformer_options:
        raise TypeError(f"model.pipeline={pipeline}: options {sorted(transformer_options)} are for "
                        f"diffusion-transformer pipelines (model=diffusers-dit)")
    if path is None:
        pipe = build_pipeline(pipeline, "full", device=device, ip_adapter=(ip_adapter or {}).get("kind"))
    else:
        pipe = load_pipeline(pipeline, path, ip_adapter)
    return _adapter(pipe, "full", device, guidance=guidance, image_size=tuple(image_size), num_steps=num_steps,
                    relation=relation, prompt=prompt, strength=strength, image_guidance=image_guidance,
                    reference_attention=reference_attention)


@register_model("diffusers-tiny")
def diffusers_tiny(device="cpu", pipeline: str = "PaintByExamplePipeline", ip_adapter: dict | None = None,
                   guidance: float = 5.0, image_size=(128, 96), num_steps: int = 50, relation: str | None = None,
                   prompt: str = "", path: str | None = None, strength: float = 0.75, image_guidance: float = 1.5,
                   reference_attention: bool = False):
    """A tiny pipeline built from config (random weights, CPU, seconds) for tests and the toy world."""
    if path is not None:
        raise ValueError("diffusers-tiny is built from config; use model=diffusers for a folder")
    kind = (ip_adapter or {"kind": "plain"}).get("kind")
    pipe = build_pipeline(pipeline, "tiny", device=device, ip_adapter=None if reference_attention else kind)
    return _adapter(pipe, "tiny", device, guidance=guidance, image_size=tuple(image_size), num_steps=num_steps,
                    relation=relation, prompt=prompt, strength=strength, image_guidance=image_guidance,
                    reference_attention=reference_attention)
