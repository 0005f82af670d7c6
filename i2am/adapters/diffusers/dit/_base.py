"""The base of the diffusion-transformer adapters: a diffusers pipeline whose denoiser is a ``transformer``, sampled by
the pipeline's own call, attributed by the joint-attention capture. Each supported pipeline is one small subclass
(``flux_kontext``, ``flux_kontext_inpaint``, ``flux2``, ``qwen_image_edit``, ``qwen_image_edit_plus``,
``longcat_image_edit``, ``joyimage_edit``, ``sd3``) that says how its call takes the inputs, how its latents are
packed and decoded, and what it swaps for the duration of one call (``scope_call``); see ``transformer`` for the
registered models."""
from __future__ import annotations

from dataclasses import replace

import torch

from i2am.adapters._base import DenoiseInputs, DiffusionAdapter, sample_ids
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters.diffusers.dit._prompts import read_prompt_embeds
from i2am.adapters.diffusers.dit.tiny import ADAPTER_CALL_ONLY, PIPELINES
from i2am.data import schema
from i2am.engine.cfg_rows import LAYOUT_CHUNKS, conditional_rows, split_cfg
from i2am.engine.hooks import Hooks
from i2am.engine.joint import NORMALISATIONS, JointAttentionCapture, find_blocks
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.layers import LayerSpec
from i2am.sampling.sampler import sample_seed


def unsupported(pipeline: str) -> str:
    return (f"model=diffusers runs the diffusion-transformer pipelines {list(PIPELINES + ADAPTER_CALL_ONLY)} "
            f"through the attribute loop; got {pipeline} (trace other transformer pipelines with i2am.trace, "
            f"docs/dit_editors.md)")


class _OneCall(Exception):
    """Stops a pipeline call after its first transformer call (``predict_x0``)."""


class DiffusersTransformerAdapter(DiffusionAdapter):
    """A diffusion-transformer pipeline (``transformer`` module docstring). ``guidance`` is the pipeline's
    ``guidance_scale`` (None = the pipeline's default): for the editors FLUX's distilled guidance embedding, not
    classifier-free guidance (every transformer call is one conditional batch); SD3 overrides ``call_layout``."""

    pipeline_class: str | None = None              # the diffusers pipeline class a subclass runs
    text_encoders: tuple[str, ...] = ()            # its components that are not loaded (no text encoder is run)
    default_relation = "image:reference"           # model.relation=null
    own_loop = True
    loads_checkpoints = False
    joint_token_knockout = True
    guidance_is_cfg = False   # LongCat-/JoyImage-Edit: guidance_scale is CFG with a negative prompt to encode

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(512, 512),
                 num_steps: int = 28, relation: str | None = None, normalisation: str = "i2am",
                 prompt_embeds: str | None = None, text_tokens: int = 8, reference_size=None,
                 reference_area: int | None = None):
        super().__init__(size, guidance, image_size, start_code="noise", num_steps=num_steps)
        if type(pipe).__name__ != self.pipeline_class:
            raise ValueError(unsupported(type(pipe).__name__))
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"model.normalisation={normalisation!r}; choose from {NORMALISATIONS}")
        self.pipe = pipe
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.blocks = find_blocks(self.transformer)   # raises for an unsupported processor, naming it
        relation = relation or self.default_relation
        self._check_relation(relation)
        if relation == "text":   # the R2G null counterfactual of a text relation: every text token removed
            self.null_reference = "knockout"
        self.relation, self.normalisation = relation, normalisation
        self.map_relation = relation if normalisation == "i2am" else f"share:{relation}"
        # FLUX.2: batch-norm statistics instead
        self.latent_scale = float(self.vae.config.get("scaling_factor") or 1.0)
        self.reference_size = tuple(reference_size or image_size)
        self.reference_area = self._reference_area(reference_area)
        self._check_guidance(guidance)
        embeds, pooled = read_prompt_embeds(prompt_embeds, text_tokens, *self.text_widths())
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("pooled_prompt_embeds", pooled, persistent=False)
        for name, tensor in self._text_buffers(prompt_embeds, embeds, pooled).items():
            self.register_buffer(name, tensor, persistent=False)
        self.sampler_defaults["scheduler"] = type(pipe.scheduler).__name__
        pipe.set_progress_bar_config(disable=True)
        self._x = None
        self.eval()

    # ---- what a pipeline's class says --------------------------------------------------------------------------
    def _check_relation(self, relation: str) -> None:
        """Raise for a relation the pipeline does not have (the editors take any the joint capture knows)."""

    @classmethod
    def absent_components(cls) -> dict:
        """The components a folder is loaded without (``from_pretrained`` keyword arguments): its text encoders."""
        return {name: None for name in cls.text_encoders}

    def _check_guidance(self, guidance: float | None) -> None:
        if guidance is not None and self.guidance_is_cfg:
            raise ValueError(f"model.guidance={guidance}: {self.pipeline_class}'s guidance_scale is classifier-free "
                             f"guidance, whose negative prompt its text encoder would encode (none is run); set "
                             f"model.guidance=null (one conditional transformer call per step)")
        if guidance is not None and "guidance_embeds" in self.transformer.config \
                and not self.transformer.config.guidance_embeds:
            raise ValueError(f"model.guidance={guidance}: this {self.pipeline_class}'s transformer has no guidance "
                             f"embedding (its pipeline would ignore it); set model.guidance=null")

    def text_widths(self) -> tuple[int, int | None]:
        """The width of the text tokens the transformer reads, and of its pooled embedding (None: it has none)."""
        config = self.transformer.config
        return config.joint_attention_dim, config.get("pooled_projection_dim")

    def _reference_area(self, reference_area: int | None) -> int | None:
        if reference_area is not None:
            raise ValueError(f"model.reference_area is QwenImageEditPipeline's reference resize; {self.pipeline_class} "
                             f"keeps its reference as given (leave it null)")
        return None

    def _text_buffers(self, path, embeds: torch.Tensor, pooled: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Further fixed text tensors of the pipeline (buffers), read from the ``model.prompt_embeds`` file."""
        return {}

    def patch_size(self) -> int:
        """Latent pixels per token side: FLUX's 2x2 packing."""
        return 2

    def call_layout(self) -> str:
        """The CFG layout of the pipeline call in progress: the editors' calls are one conditional batch."""
        return "none"

    def scope_call(self, hooks: Hooks) -> None:
        """What the pipeline swaps for the duration of one call, installed in that call's ``hooks`` (restored after
        it, also after an exception): Qwen-Image-Edit its reference resize, LongCat-Image-Edit its size and prompt
        encoding, JoyImage-Edit its size buckets and reference sampling."""

    def step_end_argument(self, hooks: Hooks, on_step_end) -> dict:
        """How the pipeline's call reports each step: its ``callback_on_step_end`` argument (LongCat-Image-Edit has
        none)."""
        return {"callback_on_step_end": on_step_end}

    def latent_shape(self, h: int, w: int) -> tuple[int, int, int]:
        """The unpacked latent of a ``h`` x ``w`` token grid: FLUX.1's 2x2-packed channels."""
        channels = self.transformer.config.in_channels   # the packed token width
        return channels // 4, 2 * h, 2 * w

    def pipeline_inputs(self, inputs: DenoiseInputs) -> dict:  # pipeline
        """The pipeline call's keyword arguments for the conditioning."""
        raise NotImplementedError

    def _pack(self, x: torch.Tensor) -> torch.Tensor:
        """The unpacked latent grid -> the pipeline's ``latents`` argument (FLUX.1's 2x2 packing)."""
        return self.pipe._pack_latents(x, x.shape[0], x.shape[1], x.shape[2], x.shape[3])

    def _unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """Packed generated tokens [B, L, C] -> the latent grid (FLUX.1: [B, C/4, 2h, 2w])."""
        height, width = self.image_size
        return self.pipe._unpack_latents(latents, height, width, self.pipe.vae_scale_factor)

    def _generated(self, output: torch.Tensor) -> torch.Tensor:
        """The generated tokens of a transformer output (the reference tokens follow them)."""
        return output[:, :self._tokens()]

    def _step_input(self, like: torch.Tensor) -> torch.Tensor:
        """The generated latents of the step's transformer input: the generated tokens before the reference
        tokens."""
        return self._x[:, :like.shape[1]].to(like.dtype)

    def transformer_timestep(self, t: float) -> float:
        """The timestep the pipeline's loop passes its transformer: FLUX's t / 1000."""
        return float(t) / 1000

    # ---- what the attribution engine reads -------------------------------------------------------------------
    @property
    def step_module(self):
        return self.transformer

    def cfg_layout_for(self, guidance) -> str:
        return "none"   # the capture and the knockout read the CFG rows of each call (conditional_slice)

    def conditional_slice(self, batch: int, layout: str) -> slice:
        """The conditional rows of a transformer call of the pipeline call in progress (``call_layout``)."""
        return conditional_rows(batch, self.call_layout())

    def conditional_rows(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.conditional_slice(x.shape[0], "none")]

    def cfg_chunks(self) -> int:
        """Stacked CFG chunks of the pipeline call in progress."""
        return LAYOUT_CHUNKS[self.call_layout()][0]

    @property
    def token_factor(self) -> int:
        """Pixels per latent token side: the VAE factor times the patch size."""
        return self.pipe.vae_scale_factor * self.patch_size()

    def token_grid(self, size) -> tuple[int, int]:
        return size[0] // self.token_factor, size[1] // self.token_factor

    def reference_grid(self):
        return "row" if self.relation == "text" else self.token_grid(self.reference_size)

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
                                     conditional=self.conditional_rows)

    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None) -> JointTokenKnockout:
        if mode != "knockout":
            raise NotImplementedError(f"{self.pipeline_class}: reference-token removal {mode!r} is not defined "
                                      f"inside joint attention; use evaluators.faithfulness.removal=knockout")
        return JointTokenKnockout(self.transformer, relation=self.relation, layers=layers, chunks=self.cfg_chunks)

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
        single-stream blocks last to first, the double-stream blocks last to first (JoyImage's ``double_blocks``),
        then every other top-level part (embedders, FLUX.2's shared modulation)."""
        t = self.transformer
        out, blocks = ("norm_out", "proj_out"), ("single_transformer_blocks", "transformer_blocks", "double_blocks")
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
        the counterfactual checks); the text conditioning rides in ``extra``."""
        reference = batch[schema.REFERENCE].to(self.device, torch.float32)
        n = reference.shape[0]
        h, w = self.token_grid(self.image_size)
        return DenoiseInputs(concat=None, context=reference, uncond_context=torch.zeros_like(reference[:1]),
                             latent_shape=self.latent_shape(h, w), sample_ids=sample_ids(batch),
                             extra=self.text_extra(n), start_image=batch[schema.IMAGE])

    def text_extra(self, n: int) -> dict[str, torch.Tensor]:
        """The fixed text conditioning of ``n`` samples (``DenoiseInputs.extra``)."""
        extra = {"prompt_embeds": self.prompt_embeds.expand(n, -1, -1)}
        if self.pooled_prompt_embeds is not None:
            extra["pooled_prompt_embeds"] = self.pooled_prompt_embeds.expand(n, -1)
        return extra

    def denoise(self, x_t, t, inputs, guidance=None):
        raise NotImplementedError(f"{self.pipeline_class} samples through its own pipeline call "
                                  f"(DiffusersTransformerAdapter.run_loop); its one-step prediction is predict_x0")

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t: float, inputs: DenoiseInputs, guidance=None,
                   alpha_cumprod=None) -> torch.Tensor:
        """The flow-matching x0 prediction ``x - sigma * v(x, sigma)`` at a point of a trajectory (``x`` on the
        unpacked latent grid, ``t`` the scheduler timestep, sigma = t / num_train_timesteps; ``alpha_cumprod`` is
        not read), from one transformer call that the pipeline itself prepares (reference latents, position ids,
        text): the call is started with ``latents=x``, its transformer call is given the timestep as the pipeline's
        loop passes it, and the call is stopped once the transformer has run (the faithfulness check's proxy
        mode)."""
        sigma = float(t) / float(self.pipe.scheduler.config.num_train_timesteps)
        latents = self._pack(x)
        kwargs = self._call_kwargs(inputs, {"guidance": guidance})
        seen = {}
        timestep = self.transformer_timestep(t)

        def at_point(module, args, kw):
            kw["timestep"] = torch.full_like(kw["timestep"], timestep)
            return args, kw

        def stop(module, args, kw, output):
            seen["v"] = self._guided(output[0] if isinstance(output, tuple) else output.sample)
            raise _OneCall

        try:
            with Hooks("predict_x0") as hooks:
                self.scope_call(hooks)
                hooks.hook(self.transformer, at_point, pre=True, with_kwargs=True)
                hooks.hook(self.transformer, stop, with_kwargs=True)
                self.pipe(**kwargs, latents=latents.to(self.dtype), num_inference_steps=1, output_type="latent",
                          return_dict=False)
        except _OneCall:
            pass
        velocity = self._unpack(self._generated(seen["v"]))
        return x - sigma * velocity.to(x.dtype)

    def _guided(self, prediction: torch.Tensor) -> torch.Tensor:
        """The CFG combination of a stacked prediction, as the pipeline computes it (none for one chunk)."""
        layout = self.call_layout()
        if layout == "none":
            return prediction
        cond, uncond = split_cfg(prediction, layout)
        return uncond + self.pipe.guidance_scale * (cond - uncond)

    @staticmethod
    def references(inputs: DenoiseInputs) -> torch.Tensor:
        """The editing references of ``inputs`` in [0, 1]."""
        return (inputs.context.float() + 1) / 2

    def _tokens(self) -> int:
        h, w = self.token_grid(self.image_size)
        return h * w

    # ---- the pipeline's own loop -----------------------------------------------------------------------------
    def _check_settings(self, settings: dict) -> None:
        check_own_call_settings(self.pipeline_class, self.sampler_defaults["scheduler"], settings)

    def _call_kwargs(self, inputs: DenoiseInputs, settings: dict) -> dict:
        height, width = self.image_size
        kwargs = dict(self.pipeline_inputs(inputs), height=height, width=width)
        if settings["guidance"] is not None:
            if self.guidance_is_cfg:   # a sampler's guidance: refused as model.guidance is
                self._check_guidance(settings["guidance"])
            kwargs["guidance_scale"] = float(settings["guidance"])
        return kwargs

    @torch.no_grad()
    def run_loop(self, inputs: DenoiseInputs, sampler, callback=None) -> torch.Tensor:
        """Latents [B, C, h, w] of one pipeline call on ``inputs``; the noise of sample i from a generator seeded by
        ``sample_seed(sampler.seed, sample_ids[i])``. ``callback`` gets per step {"step", "t", "sigma",
        "sigma_next", "x", "x_next", "eps" (the velocity, (x_next - x) / (sigma_next - sigma)), "denoised"
        (x - sigma * velocity), "alpha_cumprod": None}, on the unpacked latent grid."""
        settings = sampler.settings(self)
        self._check_settings(settings)
        generators = [torch.Generator().manual_seed(sample_seed(int(sampler.seed), sid)) for sid in inputs.sample_ids]
        kwargs = self._call_kwargs(inputs, settings)
        self._x = None
        try:
            with Hooks("run_loop") as hooks:
                self.scope_call(hooks)
                if callback is not None:
                    hooks.hook(self.transformer, self._remember_input, pre=True, with_kwargs=True)
                    self._step_hooks(hooks)
                step_end = self.step_end_argument(hooks, None if callback is None else self._step_callback(callback))
                latents = self.pipe(**kwargs, num_inference_steps=int(settings["num_steps"]), generator=generators,
                                    output_type="latent", return_dict=False, **step_end)[0]
        finally:
            self._x = None
        return self._unpack(latents)

    def _remember_input(self, module, args, kwargs):
        if self._x is None:   # the first transformer call of a step: [generated tokens, reference tokens]
            self._x = kwargs.get("hidden_states", args[0] if args else None)

    def _step_hooks(self, hooks: Hooks) -> None:
        """Further transformer hooks of a loop with a step callback (an inpainting editor remembers its velocity)."""

    def _velocity(self, x: torch.Tensor, x_next: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """The step's velocity: the Euler step's slope (the pipeline changes the latents only by that step)."""
        return (x_next - x) / (sigma_next - sigma)

    def _step_callback(self, callback):
        def on_step_end(pipe, i, t, tensors):
            x_next = tensors["latents"]
            x = self._step_input(x_next)
            self._x = None
            sigmas = pipe.scheduler.sigmas
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            velocity = self._velocity(x, x_next, sigma, sigma_next)
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
        shift = self.vae.config.get("shift_factor") or 0.0
        latents = latents.to(self.vae.dtype) / self.latent_scale + shift
        return self.vae.decode(latents).sample.clamp(-1, 1)

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False):
        raise CheckpointError(f"model=diffusers loads its weights from model.path (a diffusers folder), not {source}")


def check_own_call_settings(pipeline_class: str, own_scheduler: str, settings: dict) -> None:
    """Refuse sampler settings a pipeline's own call cannot take: another scheduler, another start code, a
    per-step guidance list."""
    if settings["scheduler"] != own_scheduler:
        raise ValueError(f"{pipeline_class} samples with its own {own_scheduler}; sampler.scheduler="
                         f"{settings['scheduler']!r} is not supported (leave it null)")
    if settings["start_code"] != "noise":
        raise ValueError(f"{pipeline_class} starts from noise; sampler.start_code={settings['start_code']!r}")
    if isinstance(settings["guidance"], (list, tuple)):
        raise ValueError(f"{pipeline_class}: one guidance_scale per run, not a per-step list")


def report_steps_through_scheduler(hooks: Hooks, pipe, on_step_end) -> dict:
    """For a pipeline whose call takes no step callback (LongCat-Image-Edit, HunyuanVideo-1.5): its scheduler's
    ``step`` calls ``on_step_end(pipe, step index, timestep, {"latents": the stepped latents})`` after each step,
    for the duration of the call's ``hooks``. Returns the call's keyword arguments for it: none."""
    if on_step_end is not None:
        scheduler = pipe.scheduler

        def step_then_report(model_output, timestep, sample, **kwargs):
            result = step(model_output, timestep, sample, **kwargs)
            on_step_end(pipe, scheduler.step_index - 1, timestep, {"latents": result[0]})
            return result

        step = hooks.replace(scheduler, "step", step_then_report)
    return {}


def one_reference(reference: torch.Tensor, pipeline_class: str) -> torch.Tensor:
    """The one reference of a pipeline that conditions a whole call on one set of references (FLUX.2,
    Qwen-Image-Edit Plus): the rows of ``reference`` must be one image (the re-runs of one sample are)."""
    if not all(torch.equal(reference[0], r) for r in reference[1:]):
        raise ValueError(f"{pipeline_class} takes one reference per call for the whole batch; run it with "
                         f"data.batch_size=1")
    return reference[0]


def pil_image(image: torch.Tensor):
    """[3, H, W] in [0, 1] -> an 8-bit PIL image (what FLUX.2 and Qwen-Image-Edit take as references)."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)
