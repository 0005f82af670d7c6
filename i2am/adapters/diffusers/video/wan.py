"""``model=diffusers`` for the image-to-video pipelines of Wan 2.1's transformer: ``WanImageToVideoPipeline``,
``ChronoEditPipeline`` and ``SkyReelsV2ImageToVideoPipeline``, one small subclass each.

What the dataset batch becomes: the ``reference`` image is the pipeline's ``image``, the frame the video starts from
(its CLIP tokens are the "image:reference" keys of every block's ``attn2``, its VAE latent the first frame's
condition channels); a video of ``num_frames`` frames at ``image_size`` is generated from noise. The dataset's
``image`` and masks are not read. No text encoder is run: ``prompt_embeds`` (and ``negative_prompt_embeds`` when the
pipeline guides) are a fixed embedding of Wan's ``WAN_TEXT_TOKENS`` tokens, zeros by default, or read from
``model.prompt_embeds`` (a safetensors file with those keys, computed once elsewhere with the pipeline's
``encode_prompt``). The pipeline conditions a whole call on one image: ``data.batch_size=1``.

Sampling is the pipeline's own call (``own_loop``, ``run_loop``): the re-running checks re-run that call with the
same noise, drawn per sample from ``sample_seed(sampler.seed, sample_id)``. The capture is ``AttributionCapture``
on the video trace's layers (``i2am.engine.wan_layers``) of one relation (``model.relation``: "image:reference",
the default, or "text"): the maps are video maps (docs/video_maps.md). The pipeline runs CFG as two transformer calls
per step, the conditional one first; ``records_call`` is False for the second, so the capture records the first.
The faithfulness check removes image tokens with ``i2am.engine.wan_knockout`` (relation "image:reference" only);
its proxy mode predicts x0 in one step of the pipeline's call (``predict_x0``).
"""
from __future__ import annotations

import torch

from i2am.adapters._base import DenoiseInputs, DiffusionAdapter, sample_ids
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters.diffusers.dit._base import one_reference, pil_image
from i2am.adapters.diffusers.dit._prompts import read_prompt_embeds
from i2am.data import schema
from i2am.engine.capture import AttributionCapture
from i2am.engine.hooks import Hooks
from i2am.engine.layers import LayerSpec
from i2am.engine.wan_knockout import WanImageTokenKnockout
from i2am.engine.wan_layers import WAN_TEXT_TOKENS, wan_layer_specs
from i2am.sampling.sampler import sample_seed

RELATIONS = ("image:reference", "text")


class _StepDone(Exception):
    """Stops a pipeline call once the transformer calls of its first step have run (``predict_x0``)."""


class VideoCapture(AttributionCapture):
    """``AttributionCapture`` whose maps carry the video's compression ratios (``maps.meta["video"]``, as
    ``i2am.trace`` writes them), which the frame strips read."""

    def __init__(self, adapter: WanVideoAdapter, cfg):
        super().__init__(adapter, cfg)
        self._video = adapter.video_meta()

    def maps(self):
        maps = super().maps()
        maps.meta["video"] = dict(self._video)
        return maps


class WanVideoAdapter(DiffusionAdapter):
    """An image-to-video pipeline on Wan 2.1's transformer (module docstring). ``guidance`` is the pipeline's
    ``guidance_scale`` (None: its default, 5.0; > 1 runs CFG as a second transformer call per step)."""

    pipeline_class = "WanImageToVideoPipeline"
    own_loop = True
    loads_checkpoints = False
    null_reference = "knockout"   # the R2G null counterfactual: every image token knocked out
    video = True

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(480, 832),
                 num_frames: int = 81, num_steps: int = 50, relation: str | None = None,
                 prompt_embeds: str | None = None):
        super().__init__(size, guidance, image_size, start_code="noise", num_steps=num_steps)
        if type(pipe).__name__ != self.pipeline_class:
            raise ValueError(f"{type(self).__name__} runs {self.pipeline_class}, got {type(pipe).__name__}")
        relation = relation or "image:reference"
        if relation not in RELATIONS:
            raise ValueError(f"model.relation={relation!r}: {self.pipeline_class}'s attn2 reads {list(RELATIONS)}")
        self.pipe, self.relation = pipe, relation
        self.transformer, self.vae, self.image_encoder = pipe.transformer, pipe.vae, pipe.image_encoder
        self.specs = [s for s in wan_layer_specs(self.transformer) if s.relation == relation]
        self.num_frames = self.frames_of(int(num_frames))
        width = self.transformer.config.text_dim
        embeds, _ = read_prompt_embeds(prompt_embeds, WAN_TEXT_TOKENS, width, None)
        if embeds.shape[1] != WAN_TEXT_TOKENS:
            raise ValueError(f"model.prompt_embeds={prompt_embeds}: {embeds.shape[1]} text tokens; Wan's attention "
                             f"takes exactly {WAN_TEXT_TOKENS} (encode_prompt pads to max_sequence_length=512)")
        negative = torch.zeros_like(embeds) if prompt_embeds is None else _negative_of(prompt_embeds, embeds)
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative, persistent=False)
        self.sampler_defaults["scheduler"] = type(pipe.scheduler).__name__
        pipe.set_progress_bar_config(disable=True)
        self.records_call, self._x = True, None   # set per transformer call by run_loop
        self.eval()

    # ---- what a pipeline's class says --------------------------------------------------------------------------
    def frames_of(self, num_frames: int) -> int:
        """The frames a call generates with ``num_frames`` (Wan: 4k + 1)."""
        ratio = int(self.pipe.vae_scale_factor_temporal)
        if num_frames < 1 or (num_frames - 1) % ratio:
            raise ValueError(f"model.num_frames={num_frames}: {self.pipeline_class} generates {ratio}k + 1 frames "
                             f"(e.g. {ratio + 1}, {2 * ratio + 1}, 81)")
        return num_frames

    def call_options(self) -> dict:
        """Further keyword arguments of the pipeline call."""
        return {"num_frames": self.num_frames}

    # ---- what the attribution engine reads -------------------------------------------------------------------
    @property
    def step_module(self):
        return self.transformer

    def attribution_layers(self) -> list[LayerSpec]:
        return list(self.specs)

    def cfg_layout_for(self, guidance) -> str:
        return "none"   # CFG runs as separate transformer calls; records_call skips the unconditional one

    def default_sram_layers(self) -> tuple[str, ...]:
        return ()   # SRAM is for image layers (docs/video_maps.md): a video layer's query has a frame too

    def latent_grid(self) -> tuple[int, int, int]:
        """(latent frames, h, w) of the generated video after patchifying."""
        patch = self.transformer.config.patch_size
        frames = (self.num_frames - 1) // int(self.pipe.vae_scale_factor_temporal) + 1
        spatial = int(self.pipe.vae_scale_factor_spatial)
        return frames // patch[0], self.image_size[0] // spatial // patch[1], self.image_size[1] // spatial // patch[2]

    def expected_query_grids(self, latent_hw=None) -> dict:
        return {s.name: self.latent_grid() for s in self.specs}

    def video_meta(self) -> dict:
        return {"temporal_ratio": int(self.pipe.vae_scale_factor_temporal),
                "spatial_ratio": int(self.pipe.vae_scale_factor_spatial) * int(self.transformer.config.patch_size[-1])}

    def attribution_capture(self, cfg) -> VideoCapture:
        return VideoCapture(self, cfg)

    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None) -> WanImageTokenKnockout:
        if mode != "knockout":
            raise NotImplementedError(f"{self.pipeline_class}: image-token removal {mode!r} is not defined; use "
                                      f"evaluators.faithfulness.removal=knockout")
        if self.relation != "image:reference":
            raise NotImplementedError(f"{self.pipeline_class}: token knockout removes the reference's image tokens; "
                                      f"model.relation={self.relation!r} maps would not be tested by it (use "
                                      f"model.relation=image:reference)")
        return WanImageTokenKnockout(self.transformer, layers=layers)

    def check_counterfactuals(self, variants) -> None:
        if self.relation != "image:reference":
            raise ValueError(f"R2G counterfactuals change the reference image, not the text that the maps of "
                             f"relation {self.relation!r} attribute to; set model.relation=image:reference or "
                             f"evaluators.faithfulness.counterfactual=false")

    def randomization_stages(self) -> list[tuple[str, list]]:
        """From the output side: the output layers, the blocks last to first, the transformer's other parts
        (patch and condition embedders), then the CLIP image encoder."""
        t = self.transformer
        out = [m for m in (t.norm_out, t.proj_out) if any(True for _ in m.parameters())]
        stages = [("transformer.out", out)]
        stages += [(f"transformer.blocks.{i}", [t.blocks[i]]) for i in reversed(range(len(t.blocks)))]
        rest = [m for n, m in t.named_children() if n not in ("norm_out", "proj_out", "blocks")
                and any(True for _ in m.parameters())]
        stages += [("transformer.in", rest), ("image_encoder", [self.image_encoder])]
        return [(name, mods) for name, mods in stages if mods]

    # ---- conditioning ----------------------------------------------------------------------------------------
    def prepare(self, batch: dict) -> DenoiseInputs:
        """context: the reference images in [-1, 1] (the first frame); the text conditioning rides in ``extra``."""
        reference = batch[schema.REFERENCE].to(self.device, torch.float32)
        frames = (self.num_frames - 1) // int(self.pipe.vae_scale_factor_temporal) + 1
        height, width = (side // int(self.pipe.vae_scale_factor_spatial) for side in self.image_size)
        latent_shape = (int(self.vae.config.z_dim), frames, height, width)
        return DenoiseInputs(concat=None, context=reference, uncond_context=torch.zeros_like(reference[:1]),
                             latent_shape=latent_shape, sample_ids=sample_ids(batch))

    def denoise(self, x_t, t, inputs, guidance=None):
        raise NotImplementedError(f"{self.pipeline_class} samples through its own pipeline call "
                                  f"(WanVideoAdapter.run_loop)")

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t: float, inputs: DenoiseInputs, guidance=None,
                   alpha_cumprod=None) -> torch.Tensor:
        """The flow-matching x0 prediction ``x - sigma * v(x, sigma)`` at a point of a trajectory (``x`` the latents
        [B, C, F, h, w], ``t`` the scheduler timestep, sigma = t / num_train_timesteps; ``alpha_cumprod`` is not
        read): the pipeline call is started with ``latents=x``, its transformer calls are given the timestep ``t``,
        and the call is stopped once the step's calls have run (the conditional one, and the unconditional one under
        CFG, combined as the pipeline does). The faithfulness check's proxy mode."""
        sigma = float(t) / float(self.pipe.scheduler.config.num_train_timesteps)
        outputs = []

        def at_point(module, args, kwargs):
            kwargs["timestep"] = torch.full_like(kwargs["timestep"], float(t))
            return args, kwargs

        def stop(module, args, output):
            outputs.append(output[0] if isinstance(output, tuple) else output.sample)
            if len(outputs) == (2 if self.pipe.do_classifier_free_guidance else 1):
                raise _StepDone

        try:
            with Hooks("predict_x0") as hooks:
                hooks.hook(self.transformer, at_point, pre=True, with_kwargs=True)
                hooks.hook(self.transformer, stop)
                self.pipe(**self._call_kwargs(inputs, {"guidance": guidance}), latents=x.to(self.dtype),
                          num_inference_steps=1, output_type="latent", return_dict=False)
        except _StepDone:
            pass
        velocity = outputs[0]
        if len(outputs) == 2:
            velocity = outputs[1] + self.pipe.guidance_scale * (outputs[0] - outputs[1])
        return x - sigma * velocity.to(x.dtype)

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
        n = inputs.context.shape[0]
        reference = one_reference((inputs.context.float() + 1) / 2, self.pipeline_class)
        height, width = self.image_size
        kwargs = dict(image=pil_image(reference), height=height, width=width,
                      prompt_embeds=self.prompt_embeds.expand(n, -1, -1),
                      negative_prompt_embeds=self.negative_prompt_embeds.expand(n, -1, -1), **self.call_options())
        if settings["guidance"] is not None:
            kwargs["guidance_scale"] = float(settings["guidance"])
        return kwargs

    @torch.no_grad()
    def run_loop(self, inputs: DenoiseInputs, sampler, callback=None) -> torch.Tensor:
        """Latents [B, C, F, h, w] of one pipeline call on ``inputs`` (every row the same reference); the noise of
        sample i from a generator seeded by ``sample_seed(sampler.seed, sample_ids[i])``. ``callback`` gets per step
        {"step", "t", "sigma", "sigma_next", "x", "x_next", "eps" (the velocity, (x_next - x) / (sigma_next - sigma)),
        "denoised" (x - sigma * velocity), "alpha_cumprod": None}."""
        settings = sampler.settings(self)
        self._check_settings(settings)
        generators = [torch.Generator().manual_seed(sample_seed(int(sampler.seed), sid)) for sid in inputs.sample_ids]
        kwargs = self._call_kwargs(inputs, settings)

        def on_step_end(pipe, i, t, tensors):
            x, x_next = self._x, tensors["latents"]
            sigma, sigma_next = float(pipe.scheduler.sigmas[i]), float(pipe.scheduler.sigmas[i + 1])
            velocity = (x_next - x) / (sigma_next - sigma)   # the Euler step is the only change of the latents
            callback({"step": i, "t": float(t), "sigma": sigma, "sigma_next": sigma_next, "x": x, "x_next": x_next,
                      "eps": velocity, "denoised": x - sigma * velocity, "alpha_cumprod": None})
            return {}

        try:
            with Hooks("run_loop") as hooks:
                self._record_first_call_per_step(hooks)
                latents = self.pipe(**kwargs, num_inference_steps=int(settings["num_steps"]), generator=generators,
                                    output_type="latent", return_dict=False,
                                    callback_on_step_end=None if callback is None else on_step_end)[0]
        finally:
            self.records_call, self._x = True, None
        return latents

    def _record_first_call_per_step(self, hooks: Hooks) -> None:
        """``records_call`` True for the first transformer call of each step (the conditional one), False for the
        unconditional call after it: the capture reads it before each call. The latents the step starts from (the
        first call's input before its condition channels) are kept for the step callback."""
        def before_call(module, args, kwargs):
            if self.records_call:
                self._x = kwargs["hidden_states"][:, :int(self.vae.config.z_dim)]

        def after_call(module, args, output):
            self.records_call = False

        def step(*args, **kwargs):
            self.records_call = True
            return original(*args, **kwargs)

        self.records_call = True
        hooks.hook(self.transformer, before_call, pre=True, with_kwargs=True)
        hooks.hook(self.transformer, after_call)
        original = hooks.replace(self.pipe.scheduler, "step", step)

    @torch.no_grad()
    def sample(self, batch: dict, sampler=None, callback=None) -> dict:
        """{"images": the video [B, 3, T, H, W] in [-1, 1], "latents": [B, C, F, h, w]}."""
        from i2am.sampling.sampler import Sampler

        latents = self.run_loop(self.prepare(batch), sampler or Sampler(), callback=callback)
        return {"images": self.decode_latents(latents), "latents": latents}

    # ---- videos <-> latents ----------------------------------------------------------------------------------
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, F, h, w] -> the video [B, 3, T, H, W] in [-1, 1], as the pipeline decodes them."""
        config = self.vae.config
        mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1).to(latents.device, self.vae.dtype)
        std = torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1).to(latents.device, self.vae.dtype)
        return self.vae.decode(latents.to(self.vae.dtype) * std + mean, return_dict=False)[0].clamp(-1, 1)

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False):
        raise CheckpointError(f"model=diffusers loads its weights from model.path (a diffusers folder), not {source}")


def _negative_of(path, embeds: torch.Tensor) -> torch.Tensor:
    """The file's ``negative_prompt_embeds`` (zeros without it), shaped like ``embeds``."""
    from safetensors.torch import load_file

    negative = load_file(str(path)).get("negative_prompt_embeds")
    if negative is None:
        return torch.zeros_like(embeds)
    negative = negative.reshape(1, *negative.shape[-2:])
    if negative.shape != embeds.shape:
        raise ValueError(f"model.prompt_embeds={path}: negative_prompt_embeds {tuple(negative.shape)} and "
                         f"prompt_embeds {tuple(embeds.shape)} differ in shape")
    return negative


class ChronoEditAdapter(WanVideoAdapter):
    """ChronoEdit: an image editor that generates a short video from the image on a Wan transformer; without temporal
    reasoning (the call's default) it generates 5 frames whatever ``num_frames`` says, the last one the edit."""

    pipeline_class = "ChronoEditPipeline"

    def frames_of(self, num_frames: int) -> int:
        if num_frames != 5:
            raise ValueError(f"model.num_frames={num_frames}: ChronoEditPipeline generates 5 frames without temporal "
                             f"reasoning (the only mode video maps take: one frame count per call); set "
                             f"model.num_frames=5")
        return 5

    def call_options(self) -> dict:
        return {}


class SkyReelsV2Adapter(WanVideoAdapter):
    """SkyReels-V2 image-to-video: Wan 2.1's transformer and call under its own classes."""

    pipeline_class = "SkyReelsV2ImageToVideoPipeline"


ADAPTERS = {cls.pipeline_class: cls for cls in (WanVideoAdapter, ChronoEditAdapter, SkyReelsV2Adapter)}
