"""``model=diffusers``: a diffusers pipeline from a local folder as an i2am adapter, so ``i2am attribute`` and its
evaluators run on it with the same loop as the native families.

    i2am attribute model=diffusers model.pipeline=PaintByExamplePipeline model.path=/models/pbe data=cocoee
    i2am attribute model=diffusers model.pipeline=StableDiffusionInpaintPipeline model.path=/models/sd-inpaint \\
        model.ip_adapter.path=/models/ip-adapter model.ip_adapter.weight_name=ip-adapter_sd15.bin

The folder is read with ``<pipeline>.from_pretrained(path, local_files_only=True)``: never a hub download. The
adapter reuses the pipeline's modules and samples with i2am's ``Sampler``; the layers it exposes are the key
streams ``i2am.trace`` finds (``i2am.attribution.pipelines``) of one relation (``model.relation``; default the
image relation: "image:example" for Paint-by-Example, "image:ip_adapter" when an IP-Adapter is loaded, else "text").

Kinds (dataset batch -> UNet inputs):
  PaintByExamplePipeline          [latent, latent of the kept scene, keep mask]; context: the CLIP image token of the
                                  reference; unconditional: the encoder's learnt vector.
  StableDiffusionInpaintPipeline  [latent, inpaint mask, latent of the kept scene]; context: the prompt (``prompt``);
                                  the reference enters through the IP-Adapter (unconditional: zero image embeds).
  StableDiffusionPipeline         [latent] (the whole image is generated from noise); context and IP-Adapter as for
                                  the inpainting pipeline; the dataset's inpaint mask only tells the evaluators
                                  where to look.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..attribution.pipelines import layer_specs
from ..data import schema
from .base import DenoiseInputs, DiffusionAdapter, sample_ids, uses_cfg
from .checkpoint import CheckpointError
from .components import clip_pixels, resize_mask
from .diffusers_tiny import build_pipeline
from .diffusers_transformer import diffusers_dit, is_transformer_pipeline
from .registry import register_model

KINDS = {"PaintByExamplePipeline": "example", "StableDiffusionInpaintPipeline": "inpaint",
         "StableDiffusionPipeline": "text2img"}


def load_pipeline(pipeline: str, path: str | Path, ip_adapter: dict | None = None):
    """``<pipeline>.from_pretrained(path)`` from a local folder, with an optional local IP-Adapter."""
    import diffusers

    cls = getattr(diffusers, pipeline, None)
    if cls is None:
        raise ValueError(f"model.pipeline={pipeline!r} is not a diffusers pipeline class")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model.path={path}: no such folder (i2am loads local pipeline folders only, "
                                f"e.g. one written by save_pretrained)")
    if pipeline == "PaintByExamplePipeline":
        pipe = _paint_by_example(cls, folder)
    else:
        pipe = cls.from_pretrained(str(folder), local_files_only=True, safety_checker=None)
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


class DiffusersPipelineAdapter(DiffusionAdapter):
    cfg_order = "uncond_cond"   # diffusers stacks [negative, positive]

    def __init__(self, pipe, size: str = "full", guidance: float = 5.0, image_size=(512, 512), num_steps: int = 50,
                 relation: str | None = None, prompt: str = ""):
        super().__init__(size, guidance, image_size, start_code="noise", num_steps=num_steps)
        self.pipeline_class = type(pipe).__name__
        if self.pipeline_class not in KINDS:
            raise ValueError(f"model=diffusers runs {sorted(KINDS)} through the attribute loop; got "
                             f"{self.pipeline_class} (trace other pipelines with i2am.trace, docs/pipelines.md)")
        self.kind = KINDS[self.pipeline_class]
        self.pipe = pipe
        self.unet, self.vae = pipe.unet, pipe.vae
        self.image_encoder = getattr(pipe, "image_encoder", None)
        self.text_encoder = getattr(pipe, "text_encoder", None)
        self.latent_scale = float(self.vae.config.get("scaling_factor", 0.18215))
        self.prompt = prompt
        self._specs = layer_specs(pipe)
        found = list(dict.fromkeys(s.relation for s in self._specs))
        self.relation = relation or next((r for r in ("image:example", "image:ip_adapter") if r in found), "text")
        if self.relation not in found:
            raise ValueError(f"model.relation={self.relation!r}: {self.pipeline_class} has the relations {found}")
        if self.kind != "example" and self.image_encoder is None and self.relation.startswith("image:"):
            raise ValueError(f"{self.pipeline_class}: the IP-Adapter needs the pipeline's image_encoder")
        self.eval()

    # ---- what the attribution engine reads -------------------------------------------------------------------
    def attribution_layers(self):
        return [s for s in self._specs if s.relation == self.relation]

    def layer_level(self, name: str) -> int:
        return super().layer_level(name.split("/", 1)[1])

    # ---- conditioning ----------------------------------------------------------------------------------------
    def _text(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = getattr(self.pipe, "tokenizer", None)
        config = self.text_encoder.config
        length = tokenizer.model_max_length if tokenizer is not None else config.max_position_embeddings

        def ids(prompt):
            if tokenizer is not None:
                return tokenizer(prompt, padding="max_length", max_length=length, truncation=True,
                                 return_tensors="pt").input_ids
            if prompt:
                raise ValueError(f"{self.pipeline_class} has no tokenizer for the prompt {prompt!r}")
            return torch.tensor([[config.bos_token_id] + [config.eos_token_id] * (length - 1)])

        encode = lambda p: self.text_encoder(ids(p).to(self.device))[0].expand(batch, -1, -1)
        return encode(self.prompt), encode("")

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
        scene = self.encode_images(image * keep)
        h, w = scene.shape[-2:]
        extra, concat = {}, None
        if self.kind == "example":
            size = self.image_encoder.config.image_size
            context = self.image_encoder(clip_pixels(batch[schema.REFERENCE].to(self.device, self.dtype), size))
            uncond = self.image_encoder.uncond_vector.to(context.dtype).expand(context.shape[0], -1, -1)
            concat = torch.cat([scene, resize_mask(keep, (h, w))], dim=1)
        else:
            context, uncond = self._text(image.shape[0])
            if self.kind == "inpaint":
                concat = torch.cat([resize_mask(mask, (h, w)), scene], dim=1)
            if getattr(self.unet, "encoder_hid_proj", None) is not None:
                extra["ip"], extra["ip_uncond"] = self._ip_embeds(batch[schema.REFERENCE])
        return DenoiseInputs(concat=concat, context=context, uncond_context=uncond, latent_shape=(4, h, w),
                             sample_ids=sample_ids(batch), extra=extra, start_image=image)

    # ---- denoising -------------------------------------------------------------------------------------------
    def predict_eps(self, x, t, concat, context, extra: dict) -> torch.Tensor:
        added = {"image_embeds": [extra["ip"]]} if "ip" in extra else None
        sample = x if concat is None else torch.cat([x, concat], dim=1)
        return self.unet(sample, t, encoder_hidden_states=context,
                         added_cond_kwargs=added).sample

    def denoise(self, x_t, t, inputs: DenoiseInputs, guidance: float | None = None) -> torch.Tensor:
        """One UNet call; with CFG the batch is [uncond, cond], the IP image embeds included."""
        guidance = self.guidance if guidance is None else guidance
        ip = {"ip": inputs.extra["ip"]} if "ip" in inputs.extra else {}
        if not uses_cfg(guidance):
            return self.predict_eps(x_t, t, inputs.concat, inputs.context, ip)
        if ip:
            ip = {"ip": torch.cat([inputs.extra["ip_uncond"], inputs.extra["ip"]])}
        concat = None if inputs.concat is None else torch.cat([inputs.concat] * 2)
        eps_uncond, eps_cond = self.predict_eps(torch.cat([x_t, x_t]), t, concat,
                                                torch.cat([inputs.uncond_context, inputs.context]), ip).chunk(2)
        return eps_uncond + guidance * (eps_cond - eps_uncond)

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False):
        raise CheckpointError(f"model=diffusers loads its weights from model.path (a diffusers folder), not {source}")


def _adapter(pipe, size, device, guidance, image_size, num_steps, relation, prompt):
    adapter = DiffusersPipelineAdapter(pipe, size, guidance=guidance, image_size=image_size, num_steps=num_steps,
                                       relation=relation, prompt=prompt)
    return adapter if torch.device(device).type == "meta" else adapter.to(device)


@register_model("diffusers")
def diffusers_pipeline(device="cpu", pipeline: str = "PaintByExamplePipeline", path: str | None = None,
                       ip_adapter: dict | None = None, guidance: float = 5.0, image_size=(512, 512),
                       num_steps: int = 50, relation: str | None = None, prompt: str = ""):
    """A local diffusers folder; ``path=None`` builds the architecture at full size with random weights (e.g. on
    ``device="meta"`` for layout checks)."""
    if is_transformer_pipeline(pipeline):   # FLUX.1 Kontext & co.: i2am/models/diffusers_transformer.py
        return diffusers_dit(device, pipeline, path, guidance, image_size, num_steps, relation, ip_adapter=ip_adapter,
                             prompt=prompt)
    if path is None:
        pipe = build_pipeline(pipeline, "full", device=device, ip_adapter=(ip_adapter or {}).get("kind"))
    else:
        pipe = load_pipeline(pipeline, path, ip_adapter)
    return _adapter(pipe, "full", device, guidance, tuple(image_size), num_steps, relation, prompt)


@register_model("diffusers-tiny")
def diffusers_tiny(device="cpu", pipeline: str = "PaintByExamplePipeline", ip_adapter: dict | None = None,
                   guidance: float = 5.0, image_size=(128, 96), num_steps: int = 50, relation: str | None = None,
                   prompt: str = "", path: str | None = None):
    """A tiny pipeline built from config (random weights, CPU, seconds) for tests and the toy world."""
    if path is not None:
        raise ValueError("diffusers-tiny is built from config; use model=diffusers for a folder")
    pipe = build_pipeline(pipeline, "tiny", device=device, ip_adapter=(ip_adapter or {"kind": "plain"}).get("kind"))
    return _adapter(pipe, "tiny", device, guidance, tuple(image_size), num_steps, relation, prompt)
