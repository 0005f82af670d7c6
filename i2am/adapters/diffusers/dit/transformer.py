"""``model=diffusers`` for diffusion-transformer pipelines: a diffusers pipeline whose denoiser is a ``transformer``
(the editors FLUX.1 Kontext and Kontext inpainting, FLUX.2, Qwen-Image-Edit and Qwen-Image-Edit Plus,
LongCat-Image-Edit, JoyImage-Edit; Stable Diffusion 3 for image <-> text) as an i2am adapter, so
``i2am attribute`` and its evaluators run on it.

    i2am attribute model=diffusers-dit-tiny data=toy_vitonhd                 # tiny FluxKontextPipeline, from config
    i2am attribute model=diffusers model.pipeline=FluxKontextPipeline model.path=/models/flux-kontext \\
        model.prompt_embeds=/embeds/empty.safetensors model.image_size=[1024,768] trainer=gpu

What the dataset batch becomes: the ``reference`` image (the garment) is the pipeline's ``image``, the editing
reference whose latent tokens join the joint-attention sequence; the ``image`` (the person) is what is generated, from
noise, at ``image_size``; the ``inpaint_mask`` only tells the evaluators where to look. No text encoder is run (none can
be downloaded here, and a garment transfer needs no words): ``prompt_embeds`` / ``pooled_prompt_embeds`` are a fixed
embedding, all zeros by default, or read from ``model.prompt_embeds`` (a safetensors file with those keys, computed
once elsewhere with the pipeline's ``encode_prompt``; Qwen-Image-Edit also reads ``prompt_embeds_mask``).
Qwen-Image-Edit (and Plus) resizes its reference to a fixed pixel area inside its call (1024x1024 unless
``model.reference_area`` says otherwise; scoped to each call, see ``reference_area``). LongCat-Image-Edit and
JoyImage-Edit would pick their own size (a 1024x1024 area); inside each call they generate at ``image_size`` and
resize their reference to it (``scope_call``), with classifier-free guidance off. FLUX.1 Kontext inpainting
repaints the ``image`` inside the ``inpaint_mask`` (the pipeline keeps it outside) with the reference as
``image_reference``. FLUX.2 and Qwen-Image-Edit Plus condition a whole call on one reference: ``data.batch_size=1``.

Sampling is the pipeline's own call (its flow-matching scheduler, packing, position ids), so the adapter sets
``own_loop`` and implements ``run_loop``: the re-running checks (faithfulness, randomisation) re-run that call with
the same noise, drawn per sample from ``sample_seed(sampler.seed, sample_id)``. The capture is the joint-attention
capture (``i2am.engine.joint``) of one relation (``model.relation``, default "image:reference") in one
normalisation (``model.normalisation``: "i2am" or "share"); layers are named ``<relation>/<block>``. Faithfulness
removes reference tokens inside the joint attention (``i2am.engine.joint_knockout``).

``StableDiffusion3Pipeline`` has no reference image: its joint attention holds the generated image and the text, so
its only relation is "text" (the default for it; "image:reference" is refused). The dataset's ``reference`` is not
read; the image is generated from noise at ``image_size`` under the fixed text embedding, with SD3's real
classifier-free guidance (``model.guidance`` is its ``guidance_scale``; the negative embedding is zeros or
``negative_prompt_embeds`` / ``negative_pooled_prompt_embeds`` from the same file). Faithfulness removes text tokens
(in the negative pass too); the R2G null counterfactual removes every text token; ``swap`` / ``rotated`` change the
reference, which SD3 does not read, and are refused. See docs/dit_editors.md.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from i2am.adapters._registry import TOY_IMAGE_SIZE, register_model
from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter, unsupported
from i2am.adapters.diffusers.dit.flux2 import Flux2Adapter
from i2am.adapters.diffusers.dit.flux_kontext import FluxKontextAdapter
from i2am.adapters.diffusers.dit.flux_kontext_inpaint import FluxKontextInpaintAdapter
from i2am.adapters.diffusers.dit.joyimage_edit import JoyImageEditAdapter
from i2am.adapters.diffusers.dit.longcat_image_edit import LongCatImageEditAdapter
from i2am.adapters.diffusers.dit.qwen_image_edit import QwenImageEditAdapter
from i2am.adapters.diffusers.dit.qwen_image_edit_plus import QwenImageEditPlusAdapter
from i2am.adapters.diffusers.dit.sd3 import StableDiffusion3Adapter
from i2am.adapters.diffusers.dit.tiny import build_transformer_pipeline
from i2am.adapters.diffusers.model_path import resolve_model_path

ADAPTERS: dict[str, type[DiffusersTransformerAdapter]] = {
    cls.pipeline_class: cls for cls in (FluxKontextAdapter, FluxKontextInpaintAdapter, Flux2Adapter,
                                        QwenImageEditAdapter, QwenImageEditPlusAdapter, LongCatImageEditAdapter,
                                        JoyImageEditAdapter, StableDiffusion3Adapter)}


def is_transformer_pipeline(name: str) -> bool:
    """Whether ``model.pipeline`` names a diffusers pipeline whose denoiser is a transformer."""
    import diffusers

    cls = getattr(diffusers, str(name), None)
    if cls is None or not isinstance(cls, type):
        return False
    return "transformer" in inspect.signature(cls.__init__).parameters


def load_transformer_pipeline(pipeline: str, path: str | Path):
    """``<pipeline>.from_pretrained`` of a local folder or a hub id's snapshot, without its text encoders and
    tokenizers."""
    import diffusers

    if pipeline not in ADAPTERS:
        raise ValueError(unsupported(pipeline))
    folder = resolve_model_path(path)   # a local folder, or a hub id's cached snapshot
    absent = ADAPTERS[pipeline].absent_components()
    try:
        return getattr(diffusers, pipeline).from_pretrained(str(folder), local_files_only=True, **absent)
    except ValueError as error:   # diffusers' words for a model with float32 modules loaded without accelerate
        if "low_cpu_mem_usage" not in str(error):
            raise
        raise ImportError(f"model.path={path}: {pipeline}'s transformer keeps some modules in float32, which "
                          f"diffusers loads only with the accelerate package installed; pip install accelerate") \
            from error


def transformer_adapter(pipe, size: str, device, guidance, image_size, num_steps, **options):
    adapter = ADAPTERS[type(pipe).__name__](pipe, size, guidance=guidance, image_size=tuple(image_size),
                                            num_steps=num_steps, **options)
    return adapter if torch.device(device).type == "meta" else adapter.to(device)


def _no_unet_options(ip_adapter: dict | None, prompt: str) -> None:
    if ip_adapter and ip_adapter.get("path"):
        raise ValueError("model.ip_adapter is for UNet pipelines; diffusion-transformer editors take the "
                         "reference as model input (model.pipeline=FluxKontextPipeline)")
    if prompt:
        raise ValueError(f"model.prompt={prompt!r}: no text encoder is run for diffusion-transformer pipelines; "
                         f"pass model.prompt_embeds=<safetensors file with prompt_embeds (+ pooled_prompt_embeds for "
                         f"FLUX.1 and SD3, prompt_embeds_mask for Qwen-Image-Edit and Plus)>")


@register_model("diffusers-dit")
def diffusers_dit(device="cpu", pipeline: str = "FluxKontextPipeline", path: str | None = None,
                  guidance: float | None = None, image_size=(512, 512), num_steps: int = 28,
                  relation: str | None = None, normalisation: str = "i2am", prompt_embeds: str | None = None,
                  text_tokens: int = 8, reference_size=None, ip_adapter: dict | None = None, prompt: str = "",
                  reference_area: int | None = None):
    """A local diffusers folder of a diffusion-transformer editor (``path``); ``path=None`` builds the full-size
    architecture on ``device="meta"`` only (layout checks: with random weights it would be 12 B parameters)."""
    _no_unet_options(ip_adapter, prompt)
    if pipeline not in ADAPTERS:
        raise ValueError(unsupported(pipeline))
    if path is None and torch.device(device).type != "meta":
        raise ValueError(f"model.path: {pipeline} is loaded from a local diffusers folder (path=null builds it on "
                         f"device=meta only); for a from-config pipeline use model=diffusers-dit-tiny")
    pipe = build_transformer_pipeline(pipeline, "full", device) if path is None else \
        load_transformer_pipeline(pipeline, path)
    return transformer_adapter(pipe, "full", device, guidance, image_size, num_steps,
                               relation=relation, normalisation=normalisation,
                               prompt_embeds=prompt_embeds, text_tokens=text_tokens, reference_size=reference_size,
                               reference_area=reference_area)


@register_model("diffusers-dit-tiny")
def diffusers_dit_tiny(device="cpu", pipeline: str = "FluxKontextPipeline", guidance: float | None = None,
                       image_size=TOY_IMAGE_SIZE, num_steps: int = 28, relation: str | None = None,
                       normalisation: str = "i2am", prompt_embeds: str | None = None, text_tokens: int = 8,
                       reference_size=None, path: str | None = None, ip_adapter: dict | None = None,
                       prompt: str = "", seed: int = 0, reference_area: int | None = None):
    """A tiny pipeline built from config (random transformer, CPU, seconds) for tests and the toy world;
    Qwen-Image-Edit resizes its reference to the generated image's area unless ``reference_area`` is given."""
    _no_unet_options(ip_adapter, prompt)
    if pipeline not in ADAPTERS:
        raise ValueError(unsupported(pipeline))
    if path is not None:
        raise ValueError("diffusers-dit-tiny is built from config; use model=diffusers-dit for a folder")
    pipe = build_transformer_pipeline(pipeline, "tiny", device, seed=seed)
    if pipeline in ("QwenImageEditPipeline", "QwenImageEditPlusPipeline") and reference_area is None:
        reference_area = int(image_size[0]) * int(image_size[1])
    return transformer_adapter(pipe, "tiny", device, guidance, image_size, num_steps,
                               relation=relation, normalisation=normalisation,
                               prompt_embeds=prompt_embeds, text_tokens=text_tokens, reference_size=reference_size,
                               reference_area=reference_area)
