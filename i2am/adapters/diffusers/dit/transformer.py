"""``model=diffusers`` for diffusion-transformer pipelines: a diffusers pipeline whose denoiser is a ``transformer``
(the editors FLUX.1 Kontext, FLUX.2, Qwen-Image-Edit; Stable Diffusion 3 for image <-> text) as an i2am adapter, so
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
Qwen-Image-Edit resizes its reference to a fixed pixel area inside its call (1024x1024 unless ``model.reference_area``
says otherwise; scoped to each call, see ``reference_area``).

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
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from i2am.adapters._base import DenoiseInputs, DiffusionAdapter, sample_ids
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters._registry import TOY_IMAGE_SIZE, register_model
from i2am.adapters.diffusers.dit.tiny import PIPELINES, TEXT_ONLY_PIPELINES, build_transformer_pipeline
from i2am.adapters.diffusers.model_path import resolve_model_path
from i2am.data import schema
from i2am.engine.joint import JointAttentionCapture, find_blocks
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.layers import LayerSpec
from i2am.sampling.sampler import sample_seed

TEXT_ENCODERS = {"FluxKontextPipeline": ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"),
                 "Flux2Pipeline": ("text_encoder", "tokenizer"),
                 "QwenImageEditPipeline": ("text_encoder", "tokenizer", "processor"),
                 "StableDiffusion3Pipeline": ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2",
                                              "text_encoder_3", "tokenizer_3")}
QWEN_EDIT_AREA = 1024 * 1024   # the pixel area QwenImageEditPipeline resizes its reference to
NORMALISATIONS = ("i2am", "share")


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

    if pipeline not in PIPELINES:
        raise ValueError(unsupported(pipeline))
    folder = resolve_model_path(path)   # a local folder, or a hub id's cached snapshot
    none = {name: None for name in TEXT_ENCODERS[pipeline]}
    return getattr(diffusers, pipeline).from_pretrained(str(folder), local_files_only=True, **none)


def unsupported(pipeline: str) -> str:
    return (f"model=diffusers runs the diffusion-transformer pipelines {list(PIPELINES)} through the attribute "
            f"loop; got {pipeline} (trace other transformer pipelines with i2am.trace, docs/dit_editors.md)")


def default_relation(pipeline: str) -> str:
    """``model.relation=null``: the reference image for the editors, the text for SD3 (its only conditioning)."""
    return "text" if pipeline in TEXT_ONLY_PIPELINES else "image:reference"


def read_prompt_embeds(path: str | Path | None, tokens: int, width: int, pooled_width: int | None):
    """The fixed text conditioning: ``(prompt_embeds [1, T, D], pooled [1, P] or None)``, zeros unless ``path``."""
    if path is None:
        pooled = None if pooled_width is None else torch.zeros(1, pooled_width)
        return torch.zeros(1, tokens, width), pooled
    from safetensors.torch import load_file

    state = load_file(str(path))
    if "prompt_embeds" not in state:
        raise KeyError(f"model.prompt_embeds={path}: no 'prompt_embeds' tensor (keys {sorted(state)})")
    embeds = state["prompt_embeds"].reshape(1, *state["prompt_embeds"].shape[-2:])
    if embeds.shape[-1] != width:
        raise ValueError(f"model.prompt_embeds={path}: width {embeds.shape[-1]}, the transformer reads {width}")
    pooled = state.get("pooled_prompt_embeds")
    if pooled_width is not None and pooled is None:
        raise KeyError(f"model.prompt_embeds={path}: this pipeline also needs 'pooled_prompt_embeds'")
    return embeds, None if pooled is None else pooled.reshape(1, -1)


def read_prompt_mask(path: str | Path | None, embeds: torch.Tensor) -> torch.Tensor:
    """Qwen-Image-Edit's text padding mask [1, T]: all ones unless ``path`` holds a 'prompt_embeds_mask'."""
    if path is not None:
        from safetensors.torch import load_file

        mask = load_file(str(path)).get("prompt_embeds_mask")
        if mask is not None:
            if mask.numel() != embeds.shape[1]:
                raise ValueError(f"model.prompt_embeds={path}: prompt_embeds_mask has {mask.numel()} entries for "
                                 f"{embeds.shape[1]} text tokens")
            return mask.reshape(1, -1).long()
    return torch.ones(1, embeds.shape[1], dtype=torch.long)


def read_negative_embeds(path: str | Path | None, embeds: torch.Tensor, pooled: torch.Tensor | None):
    """SD3's negative (unconditional) text conditioning: zeros shaped like ``embeds`` / ``pooled`` unless ``path``
    holds 'negative_prompt_embeds' (and then also 'negative_pooled_prompt_embeds')."""
    state = {}
    if path is not None:
        from safetensors.torch import load_file

        state = load_file(str(path))
    if "negative_prompt_embeds" not in state:
        return torch.zeros_like(embeds), None if pooled is None else torch.zeros_like(pooled)
    negative = state["negative_prompt_embeds"].reshape(1, *state["negative_prompt_embeds"].shape[-2:])
    if negative.shape != embeds.shape:
        raise ValueError(f"model.prompt_embeds={path}: negative_prompt_embeds {tuple(negative.shape)} and "
                         f"prompt_embeds {tuple(embeds.shape)} differ in shape (the pipeline stacks them)")
    if "negative_pooled_prompt_embeds" not in state:
        raise KeyError(f"model.prompt_embeds={path}: negative_prompt_embeds needs 'negative_pooled_prompt_embeds'")
    return negative, state["negative_pooled_prompt_embeds"].reshape(1, -1)


class _OneCall(Exception):
    """Stops a pipeline call after its first transformer call (``predict_x0``)."""


class DiffusersTransformerAdapter(DiffusionAdapter):
    """A diffusion-transformer pipeline (module docstring). ``guidance`` is the pipeline's ``guidance_scale``
    (None = the pipeline's default): for the editors FLUX's distilled guidance embedding, not classifier-free
    guidance (every transformer call is one conditional batch); for SD3 its classifier-free guidance (above 1 each
    call stacks [negative, positive]; the capture scores the positive rows, the knockout masks both)."""

    own_loop = True

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(512, 512),
                 num_steps: int = 28, relation: str | None = None, normalisation: str = "i2am",
                 prompt_embeds: str | None = None, text_tokens: int = 8, reference_size=None,
                 reference_area: int | None = None):
        super().__init__(size, guidance, image_size, start_code="noise", num_steps=num_steps)
        self.pipeline_class = type(pipe).__name__
        if self.pipeline_class not in PIPELINES:
            raise ValueError(unsupported(self.pipeline_class))
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"model.normalisation={normalisation!r}; choose from {NORMALISATIONS}")
        self.pipe = pipe
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.blocks = find_blocks(self.transformer)   # raises for an unsupported processor, naming it
        self.text_only = self.pipeline_class in TEXT_ONLY_PIPELINES
        relation = relation or default_relation(self.pipeline_class)
        if self.text_only and relation != "text":
            raise ValueError(f"model.relation={relation!r}: {self.pipeline_class} has no reference image (its joint "
                             f"attention holds the generated image and the text); its only relation is 'text'")
        if relation == "text":   # the R2G null counterfactual of a text relation: every text token removed
            self.null_reference = "knockout"
        self.relation, self.normalisation = relation, normalisation
        self.map_relation = relation if normalisation == "i2am" else f"share:{relation}"
        # FLUX.2: batch-norm statistics instead
        self.latent_scale = float(self.vae.config.get("scaling_factor") or 1.0)
        self.reference_size = tuple(reference_size or image_size)
        if reference_area is not None and self.pipeline_class != "QwenImageEditPipeline":
            raise ValueError(f"model.reference_area is QwenImageEditPipeline's reference resize; {self.pipeline_class} "
                             f"keeps its reference as given (leave it null)")
        self.reference_area = None if reference_area is None else int(reference_area)
        if guidance is not None and "guidance_embeds" in pipe.transformer.config \
                and not pipe.transformer.config.guidance_embeds:
            raise ValueError(f"model.guidance={guidance}: this {self.pipeline_class}'s transformer has no guidance "
                             f"embedding (its pipeline would ignore it); set model.guidance=null")
        config = self.transformer.config
        embeds, pooled = read_prompt_embeds(prompt_embeds, text_tokens, config.joint_attention_dim,
                                            config.get("pooled_projection_dim"))
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("pooled_prompt_embeds", pooled, persistent=False)
        mask = read_prompt_mask(prompt_embeds, embeds) if self.pipeline_class == "QwenImageEditPipeline" else None
        self.register_buffer("prompt_embeds_mask", mask, persistent=False)
        negative, negative_pooled = read_negative_embeds(prompt_embeds, embeds, pooled) if self.text_only \
            else (None, None)
        self.register_buffer("negative_prompt_embeds", negative, persistent=False)
        self.register_buffer("negative_pooled_prompt_embeds", negative_pooled, persistent=False)
        self.sampler_defaults["scheduler"] = type(pipe.scheduler).__name__
        pipe.set_progress_bar_config(disable=True)
        self._x = None
        self.eval()

    # ---- what the attribution engine reads -------------------------------------------------------------------
    @property
    def step_module(self):
        return self.transformer

    def cfg_layout_for(self, guidance) -> str:
        return "none"   # the capture and the knockout read SD3's stacked CFG rows per call (conditional_rows)

    def conditional_rows(self, x: torch.Tensor) -> torch.Tensor:
        """The positive rows of a transformer call's batch: SD3 with CFG stacks [negative, positive]; the editors'
        calls are conditional batches."""
        return x.chunk(2)[1] if self.cfg_chunks() == 2 else x

    def cfg_chunks(self) -> int:
        """Stacked CFG chunks of the pipeline call in progress (2 for SD3 with guidance_scale > 1, else 1)."""
        return 2 if self.text_only and self.pipe.do_classifier_free_guidance else 1

    @property
    def token_factor(self) -> int:
        """Pixels per latent token side: the VAE factor times the 2x2 packing (SD3: its 2x2 patches)."""
        return self.pipe.vae_scale_factor * (self.transformer.config.patch_size if self.text_only else 2)

    def token_grid(self, size) -> tuple[int, int]:
        return size[0] // self.token_factor, size[1] // self.token_factor

    def reference_grid(self):
        if self.relation == "text":
            return "row"
        if self.pipeline_class == "QwenImageEditPipeline":   # the grid of the resized reference
            from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

            height, width = self.reference_size
            width, height, _ = calculate_dimensions(self.reference_area or QWEN_EDIT_AREA, width / height)
            return self.token_grid((height, width))
        return self.token_grid(self.reference_size)

    @contextmanager
    def scoped_reference_area(self):
        """Inside: QwenImageEditPipeline resizes its reference to ``reference_area`` pixels instead of its fixed
        1024x1024 area. The pipeline reads that area from its module's ``calculate_dimensions`` (no argument
        sets it; a reference passed as latents skips the resize but breaks the pipeline's size read), so that
        function is swapped for the duration of one call and restored after it, also after an exception."""
        if self.reference_area is None:
            yield
            return
        from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

        original, area = module.calculate_dimensions, self.reference_area
        module.calculate_dimensions = lambda _area, ratio: original(area, ratio)
        try:
            yield
        finally:
            module.calculate_dimensions = original

    def attribution_layers(self) -> list[LayerSpec]:
        grid = self.token_grid(self.image_size)
        return [LayerSpec(name=f"{self.map_relation}/{b.name}", module=b.module, ref_grid=self.reference_grid(),
                          group=b.group, query_grid=grid, relation=self.map_relation) for b in self.blocks]

    def expected_query_grids(self, latent_hw=None) -> dict[str, tuple[int, int]]:
        return {s.name: s.query_grid for s in self.attribution_layers()}

    def _block_names(self, names) -> list[str] | str:
        if isinstance(names, str):
            return names if names in ("all", "all+mid") or names.startswith("group:") else [names.split("/", 1)[-1]]
        return [n.split("/", 1)[-1] for n in names]

    def attribution_capture(self, cfg) -> JointAttentionCapture:
        """The joint-attention capture of this adapter's relation; layer names may be given as in the maps
        (``<relation>/<block>``) or as block names."""
        layers = self._block_names(cfg.layers)
        cfg = replace(cfg, layers="all" if layers == "all+mid" else layers,
                      sram_layers=tuple(self._block_names(list(cfg.sram_layers))))
        return JointAttentionCapture(self.transformer, cfg, normalisations=(self.normalisation,),
                                     relations=(self.relation,), model_name=self.name or self.pipeline_class,
                                     conditional=self.conditional_rows if self.text_only else None)

    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None) -> JointTokenKnockout:
        if mode != "knockout":
            raise NotImplementedError(f"{self.pipeline_class}: reference-token removal {mode!r} is not defined "
                                      f"inside joint attention; use evaluators.faithfulness.removal=knockout")
        return JointTokenKnockout(self.transformer, relation=self.relation, layers=layers,
                                  chunks=self.cfg_chunks if self.text_only else None)

    def check_counterfactuals(self, variants) -> None:
        """Relation "text" (SD3's only one; an editor's with ``model.relation=text``): the R2G counterfactuals that
        change the reference image would not test the text maps."""
        refused = [v for v in variants if v in ("swap", "rotated")]
        if self.relation == "text" and refused:
            raise ValueError(f"R2G counterfactuals {refused} change the reference image, not the text that the maps "
                             f"of relation 'text' attribute to ({self.pipeline_class}); set "
                             f"evaluators.faithfulness.counterfactuals=[null] (null: every text token removed)")

    def randomization_stages(self) -> list[tuple[str, list]]:
        """The transformer's stages for the randomisation check, from the output side: the output layers, the
        single-stream blocks last to first, the double-stream blocks last to first, then every other top-level part
        (embedders, FLUX.2's shared modulation)."""
        t = self.transformer
        out, blocks = ("norm_out", "proj_out"), ("single_transformer_blocks", "transformer_blocks")
        has_params = lambda m: any(True for _ in m.parameters())
        stages = [("transformer.out", [getattr(t, a) for a in out if hasattr(t, a)])]
        for attr in blocks:
            stack = getattr(t, attr, [])
            stages += [(f"transformer.{attr}.{i}", [stack[i]]) for i in reversed(range(len(stack)))]
        stages.append(("transformer.in", [m for n, m in t.named_children() if n not in out + blocks and has_params(m)]))
        return [(name, mods) for name, mods in stages if mods]

    # ---- conditioning ----------------------------------------------------------------------------------------
    def prepare(self, batch: dict) -> DenoiseInputs:
        """context: the reference images in [-1, 1]; uncond_context: a mid-grey reference (the "null" reference of
        the counterfactual checks); the text conditioning rides in ``extra``. SD3: context is the text embedding,
        uncond_context the negative one (the reference is not read)."""
        if self.text_only:
            return self._prepare_text_only(batch)
        reference = batch[schema.REFERENCE].to(self.device, torch.float32)
        n = reference.shape[0]
        h, w = self.token_grid(self.image_size)
        extra = {"prompt_embeds": self.prompt_embeds.expand(n, -1, -1)}
        if self.pooled_prompt_embeds is not None:
            extra["pooled_prompt_embeds"] = self.pooled_prompt_embeds.expand(n, -1)
        if self.prompt_embeds_mask is not None:
            extra["prompt_embeds_mask"] = self.prompt_embeds_mask.expand(n, -1)
        channels = self.transformer.config.in_channels   # the packed token width
        shape = (channels, h, w) if self.pipeline_class == "Flux2Pipeline" else (channels // 4, 2 * h, 2 * w)
        return DenoiseInputs(concat=None, context=reference, uncond_context=torch.zeros_like(reference[:1]),
                             latent_shape=shape, sample_ids=sample_ids(batch), extra=extra,
                             start_image=batch[schema.IMAGE])

    def _prepare_text_only(self, batch: dict) -> DenoiseInputs:
        n = batch[schema.IMAGE].shape[0]
        h, w = self.token_grid(self.image_size)
        patch = self.transformer.config.patch_size
        context = self.prompt_embeds.expand(n, -1, -1)
        extra = {"pooled_prompt_embeds": self.pooled_prompt_embeds.expand(n, -1),
                 "negative_prompt_embeds": self.negative_prompt_embeds.expand(n, -1, -1),
                 "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds.expand(n, -1)}
        return DenoiseInputs(concat=None, context=context, uncond_context=self.negative_prompt_embeds,
                             latent_shape=(self.transformer.config.in_channels, h * patch, w * patch),
                             sample_ids=sample_ids(batch), extra=extra, start_image=batch[schema.IMAGE])

    def denoise(self, x_t, t, inputs, guidance=None):
        raise NotImplementedError(f"{self.pipeline_class} samples through its own pipeline call "
                                  f"(DiffusersTransformerAdapter.run_loop); its one-step prediction is predict_x0")

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t: float, inputs: DenoiseInputs, guidance=None) -> torch.Tensor:
        """The flow-matching x0 prediction ``x - sigma * v(x, sigma)`` at a point of a trajectory (``x`` on the
        unpacked latent grid, ``t`` the scheduler timestep, sigma = t / num_train_timesteps), from one transformer
        call that the pipeline itself prepares (reference latents, position ids, text): the call is started with
        ``latents=x``, its transformer call is given the timestep t / 1000 as the pipeline's loop passes it, and the
        call is stopped once the transformer has run (the faithfulness check's proxy mode)."""
        sigma = float(t) / float(self.pipe.scheduler.config.num_train_timesteps)
        latents = x if self.pipeline_class == "Flux2Pipeline" or self.text_only else self.pipe._pack_latents(
            x, x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        kwargs = self._call_kwargs(inputs, {"guidance": guidance})
        seen = {}
        timestep = float(t) if self.text_only else float(t) / 1000   # SD3 passes t itself, the FLUX family t / 1000

        def at_point(module, args, kw):
            kw["timestep"] = torch.full_like(kw["timestep"], timestep)
            return args, kw

        def stop(module, args, kw, output):
            seen["v"] = self._guided(output[0] if isinstance(output, tuple) else output.sample)
            raise _OneCall

        handles = [self.transformer.register_forward_pre_hook(at_point, with_kwargs=True),
                   self.transformer.register_forward_hook(stop, with_kwargs=True)]
        try:
            with self.scoped_reference_area():
                self.pipe(**kwargs, latents=latents.to(self.dtype), num_inference_steps=1, output_type="latent",
                          return_dict=False)
        except _OneCall:
            pass
        finally:
            for handle in handles:
                handle.remove()
        velocity = seen["v"] if self.text_only else self._unpack(seen["v"][:, :self._tokens()])
        return x - sigma * velocity.to(x.dtype)

    def _guided(self, prediction: torch.Tensor) -> torch.Tensor:
        """SD3's CFG combination of a stacked [negative, positive] prediction, as its pipeline computes it."""
        if self.cfg_chunks() == 1:
            return prediction
        uncond, cond = prediction.chunk(2)
        return uncond + self.pipe.guidance_scale * (cond - uncond)

    def _tokens(self) -> int:
        h, w = self.token_grid(self.image_size)
        return h * w

    # ---- the pipeline's own loop -----------------------------------------------------------------------------
    def _check_settings(self, settings: dict) -> None:
        own = self.sampler_defaults["scheduler"]
        if settings["scheduler"] != own:
            raise ValueError(f"{self.pipeline_class} samples with its own {own}; sampler.scheduler="
                             f"{settings['scheduler']!r} is not supported (leave it null)")
        if settings["start_code"] != "noise":
            raise ValueError(f"{self.pipeline_class} starts from noise; sampler.start_code={settings['start_code']!r}")
        if isinstance(settings["guidance"], (list, tuple)):
            raise ValueError(f"{self.pipeline_class}: one guidance_scale per run, not a per-step list")

    def _call_kwargs(self, inputs: DenoiseInputs, settings: dict) -> dict:
        height, width = self.image_size
        reference = None if self.text_only else (inputs.context.float() + 1) / 2
        if self.text_only:   # SD3: no reference; the negative embedding is used where guidance_scale > 1
            extra = inputs.extra
            kwargs = dict(prompt_embeds=inputs.context, pooled_prompt_embeds=extra["pooled_prompt_embeds"],
                          negative_prompt_embeds=extra["negative_prompt_embeds"],
                          negative_pooled_prompt_embeds=extra["negative_pooled_prompt_embeds"], height=height,
                          width=width)
        elif self.pipeline_class == "Flux2Pipeline":
            kwargs = dict(image=[_one_reference(reference, self.pipeline_class)],
                          prompt_embeds=inputs.extra["prompt_embeds"], height=height, width=width)
        elif self.pipeline_class == "QwenImageEditPipeline":   # references as PIL images (8-bit), true CFG off
            kwargs = dict(image=[_pil(r) for r in reference], prompt_embeds=inputs.extra["prompt_embeds"],
                          prompt_embeds_mask=inputs.extra["prompt_embeds_mask"], height=height, width=width,
                          true_cfg_scale=1.0)
        else:
            kwargs = dict(image=reference, prompt_embeds=inputs.extra["prompt_embeds"],
                          pooled_prompt_embeds=inputs.extra.get("pooled_prompt_embeds"), height=height, width=width,
                          max_area=height * width, _auto_resize=False)
        if settings["guidance"] is not None:
            kwargs["guidance_scale"] = float(settings["guidance"])
        return kwargs

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """Packed generated tokens [B, L, C] -> the latent grid: FLUX.1 [B, C/4, 2h, 2w], FLUX.2 its patchified
        latents [B, C, h, w] (row-major tokens)."""
        height, width = self.image_size
        if self.text_only:   # SD3's latents are not packed
            return latents
        if self.pipeline_class == "Flux2Pipeline":
            h, w = self.token_grid(self.image_size)
            return latents.transpose(1, 2).reshape(latents.shape[0], latents.shape[2], h, w)
        if self.pipeline_class == "QwenImageEditPipeline":   # [B, C, 1 frame, H, W] -> [B, C, H, W]
            return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)[:, :, 0]
        return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)

    @torch.no_grad()
    def run_loop(self, inputs: DenoiseInputs, sampler, callback=None) -> torch.Tensor:
        """Latents [B, C, h, w] of one pipeline call on ``inputs``; the noise of sample i from a generator seeded by
        ``sample_seed(sampler.seed, sample_ids[i])``. ``callback`` gets per step {"step", "t", "sigma",
        "sigma_next", "x", "x_next", "eps" (the velocity, (x_next - x) / (sigma_next - sigma)), "denoised"
        (x - sigma * velocity), "alpha_cumprod": None}, on the unpacked latent grid."""
        settings = sampler.settings(self)
        self._check_settings(settings)
        seed = int(getattr(sampler, "seed", 0))
        generators = [torch.Generator().manual_seed(sample_seed(seed, sid)) for sid in inputs.sample_ids]
        kwargs = self._call_kwargs(inputs, settings)
        handle = self.transformer.register_forward_pre_hook(self._remember_input, with_kwargs=True) \
            if callback is not None else None
        self._x = None
        try:
            with self.scoped_reference_area():
                latents = self.pipe(**kwargs, num_inference_steps=int(settings["num_steps"]), generator=generators,
                                    output_type="latent", return_dict=False,
                                    callback_on_step_end=None if callback is None else self._step_callback(callback))[0]
        finally:
            if handle is not None:
                handle.remove()
            self._x = None
        return self._unpack(latents)

    def _remember_input(self, module, args, kwargs):
        if self._x is None:   # the first transformer call of a step: [generated tokens, reference tokens]
            self._x = kwargs.get("hidden_states", args[0] if args else None)

    def _step_input(self, like: torch.Tensor) -> torch.Tensor:
        """The generated latents of the step's transformer input: SD3 its first CFG chunk (the chunks are copies),
        the editors the generated tokens before the reference tokens."""
        x = self._x[:like.shape[0]] if self.text_only else self._x[:, :like.shape[1]]
        return x.to(like.dtype)

    def _step_callback(self, callback):
        def on_step_end(pipe, i, t, tensors):
            x_next = tensors["latents"]
            x = self._step_input(x_next)
            self._x = None
            sigmas = pipe.scheduler.sigmas
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            velocity = (x_next - x) / (sigma_next - sigma)
            callback({"step": i, "t": float(t), "sigma": sigma, "sigma_next": sigma_next, "x": self._unpack(x),
                      "x_next": self._unpack(x_next), "eps": self._unpack(velocity),
                      "denoised": self._unpack(x - sigma * velocity), "alpha_cumprod": None})
            return {}
        return on_step_end

    @torch.no_grad()
    def sample(self, batch: dict, sampler=None, callback=None) -> dict:
        from i2am.sampling.sampler import Sampler

        latents = self.run_loop(self.prepare(batch), sampler or Sampler(), callback=callback)
        return {"images": self.decode_latents(latents), "latents": latents}

    # ---- images <-> latents ----------------------------------------------------------------------------------
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        if self.pipeline_class == "Flux2Pipeline":   # batch-norm statistics of the patchified latents, then unpatchify
            bn = self.vae.bn
            mean = bn.running_mean.view(1, -1, 1, 1).to(latents)
            std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(latents)
            latents = self.pipe._unpatchify_latents(latents * std + mean)
            return self.vae.decode(latents.to(self.vae.dtype)).sample.clamp(-1, 1)
        if self.pipeline_class == "QwenImageEditPipeline":   # per-channel statistics, one video frame
            config = self.vae.config
            mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
            std = torch.tensor(config.latents_std).view(1, -1, 1, 1, 1).to(latents)
            frames = (latents[:, :, None] * std + mean).to(self.vae.dtype)
            return self.vae.decode(frames, return_dict=False)[0][:, :, 0].clamp(-1, 1)
        shift = self.vae.config.get("shift_factor") or 0.0
        latents = latents.to(self.vae.dtype) / self.latent_scale + shift
        return self.vae.decode(latents).sample.clamp(-1, 1)

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False):
        raise CheckpointError(f"model=diffusers loads its weights from model.path (a diffusers folder), not {source}")


def _one_reference(reference: torch.Tensor, pipeline: str):
    """FLUX.2 conditions a whole call on one set of reference images (PIL): the rows of ``reference`` ([B, 3, H, W]
    in [0, 1]) must be one image (the re-runs of one sample are)."""
    if not all(torch.equal(reference[0], r) for r in reference[1:]):
        raise ValueError(f"{pipeline} takes one reference per call for the whole batch; run it with "
                         f"data.batch_size=1")
    return _pil(reference[0])


def _pil(image: torch.Tensor):
    """[3, H, W] in [0, 1] -> an 8-bit PIL image (what FLUX.2 and Qwen-Image-Edit take as references)."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def transformer_adapter(pipe, size: str, device, guidance, image_size, num_steps, **options):
    adapter = DiffusersTransformerAdapter(pipe, size, guidance=guidance, image_size=tuple(image_size),
                                          num_steps=num_steps, **options)
    return adapter if torch.device(device).type == "meta" else adapter.to(device)


def _no_unet_options(ip_adapter: dict | None, prompt: str) -> None:
    if ip_adapter and ip_adapter.get("path"):
        raise ValueError("model.ip_adapter is for UNet pipelines; diffusion-transformer editors take the "
                         "reference as model input (model.pipeline=FluxKontextPipeline)")
    if prompt:
        raise ValueError(f"model.prompt={prompt!r}: no text encoder is run for diffusion-transformer pipelines; "
                         f"pass model.prompt_embeds=<safetensors file with prompt_embeds (+ pooled_prompt_embeds for "
                         f"FLUX.1 and SD3, prompt_embeds_mask for Qwen-Image-Edit)>")


@register_model("diffusers-dit")
def diffusers_dit(device="cpu", pipeline: str = "FluxKontextPipeline", path: str | None = None,
                  guidance: float | None = None, image_size=(512, 512), num_steps: int = 28,
                  relation: str | None = None, normalisation: str = "i2am", prompt_embeds: str | None = None,
                  text_tokens: int = 8, reference_size=None, ip_adapter: dict | None = None, prompt: str = "",
                  reference_area: int | None = None):
    """A local diffusers folder of a diffusion-transformer editor (``path``); ``path=None`` builds the full-size
    architecture on ``device="meta"`` only (layout checks: with random weights it would be 12 B parameters)."""
    _no_unet_options(ip_adapter, prompt)
    if pipeline not in PIPELINES:
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
    if pipeline not in PIPELINES:
        raise ValueError(unsupported(pipeline))
    if path is not None:
        raise ValueError("diffusers-dit-tiny is built from config; use model=diffusers-dit for a folder")
    pipe = build_transformer_pipeline(pipeline, "tiny", device, seed=seed)
    if pipeline == "QwenImageEditPipeline" and reference_area is None:
        reference_area = int(image_size[0]) * int(image_size[1])
    return transformer_adapter(pipe, "tiny", device, guidance, image_size, num_steps,
                               relation=relation, normalisation=normalisation,
                               prompt_embeds=prompt_embeds, text_tokens=text_tokens, reference_size=reference_size,
                               reference_area=reference_area)
