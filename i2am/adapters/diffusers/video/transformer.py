"""``TransformerVideoAdapter``: what the ``model=diffusers`` image-to-video pipelines on a video transformer share
(Wan 2.1 and its relatives in ``wan``, LTX-2 in ``ltx2``, HunyuanVideo-1.5 in ``hunyuan_video15``).

The dataset's ``reference`` is the call's ``image`` and the video of ``num_frames`` frames at ``image_size`` is
generated from noise by the pipeline's own call (``run_loop``), re-run with the same noise by the checks: the noise
of sample i from a generator seeded by ``sample_seed(sampler.seed, sample_id)``. Each step is reported to the
callback with the latents before and after it (the transformer call's input, kept by ``_watch_calls``, and the
step's output), from which the flow-matching velocity and x0 follow. The capture reads one transformer call per step
(``records_call``); the faithfulness check's knockout is the subclass's ``knockout`` (relation "image:reference"
only), its proxy mode one step of the pipeline's call (``predict_x0``); the randomisation check re-initialises the
transformer from its output side, then the conditioning encoder (``conditioning_stages``).

By default the call takes the size as ``height`` / ``width``, the reference as one image, the guidance as
``guidance_scale``, reports its steps through ``callback_on_step_end`` with [B, C, F, h, w] latents and runs CFG as a
second transformer call per step after the conditional one; a subclass overrides what its pipeline does otherwise.
The VAE's ratios are read from the pipeline's ``vae_scale_factor_temporal`` / ``vae_scale_factor_spatial``. What
only the pipeline can say (its layers, latent channels, patch, prompt embeddings, knockout, block list, conditioning
encoder, decoding) each subclass defines; the methods here raise ``NotImplementedError`` naming the one missing.
"""
from __future__ import annotations

import torch

from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters.diffusers.video.base import StepDone, VideoPipelineAdapter
from i2am.data import schema
from i2am.engine.hooks import Hooks
from i2am.engine.layers import LayerSpec
from i2am.sampling.sampler import sample_seed


class TransformerVideoAdapter(VideoPipelineAdapter):
    """An image-to-video pipeline on a video transformer, run through its own call (module docstring)."""

    blocks_attr: str   # the transformer's attribute holding its block list (``randomization_stages``)

    def __init__(self, pipe, size: str, guidance: float | None, image_size, num_frames: int, num_steps: int,
                 relation: str | None, prompt_embeds: str | None):
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation)
        self.transformer, self.vae = pipe.transformer, pipe.vae
        self.image_encoder = getattr(pipe, "image_encoder", None)
        self.specs = [s for s in self.layer_specs() if s.relation == self.relation]
        self._set_prompt_embeds(prompt_embeds)
        self.records_call, self._x = True, None   # set per transformer call by run_loop
        self.eval()

    def _undefined(self, duty: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not define {duty}: every TransformerVideoAdapter "
                                   f"subclass says its pipeline's {duty}")

    # ---- what a pipeline's class says --------------------------------------------------------------------------
    def layer_specs(self) -> list[LayerSpec]:
        """The attributed layers of every relation."""
        raise self._undefined("layer_specs")

    @property
    def temporal_ratio(self) -> int:
        """Video frames per latent frame (after the first), under the name most diffusers video pipelines give it
        (a pipeline naming it otherwise overrides this: LTX-2)."""
        return int(self.pipe.vae_scale_factor_temporal)

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent cell of the VAE, under the name most diffusers video pipelines give it (as
        ``temporal_ratio``)."""
        return int(self.pipe.vae_scale_factor_spatial)

    @property
    def latent_channels(self) -> int:
        """Channels of the video latents (the first channels of the transformer's input)."""
        raise self._undefined("latent_channels")

    @property
    def patch(self) -> tuple[int, int, int]:
        """The transformer's patch (frames, rows, columns of latent cells per token)."""
        raise self._undefined("patch")

    def _set_prompt_embeds(self, prompt_embeds: str | None) -> None:
        """The fixed text conditioning of every call, as buffers, from ``model.prompt_embeds`` (None: zeros)."""
        raise self._undefined("_set_prompt_embeds")

    def prompt_kwargs(self, n: int) -> dict:
        """The text conditioning of a call on ``n`` rows."""
        raise self._undefined("prompt_kwargs")

    def knockout(self, layers=None):
        """The knockout of the reference's tokens in the "image:reference" layers."""
        raise self._undefined("knockout")

    def conditioning_stages(self) -> list[tuple[str, list]]:
        """The last stages of the randomisation check: the reference's or the prompt's encoder."""
        raise self._undefined("conditioning_stages")

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, F, h, w] -> the video [B, 3, T, H, W] in [-1, 1], as the pipeline decodes them."""
        raise self._undefined("decode_latents")

    def frames_of(self, num_frames: int) -> int:
        """The frames a call generates with ``num_frames``: the causal video VAE's ``temporal_ratio`` k + 1."""
        ratio = self.temporal_ratio
        if num_frames < 1 or (num_frames - 1) % ratio:
            raise ValueError(f"model.num_frames={num_frames}: {self.pipeline_class} generates {ratio}k + 1 frames "
                             f"(e.g. {ratio + 1}, {2 * ratio + 1}, {4 * ratio + 1})")
        return num_frames

    def call_options(self) -> dict:
        """Further keyword arguments of the pipeline call."""
        return {"num_frames": self.num_frames}

    # ---- what the attribution engine reads -------------------------------------------------------------------
    @property
    def step_module(self):
        return self.transformer

    def cfg_layout_for(self, guidance) -> str:
        return "none"   # CFG runs as separate transformer calls; records_call skips the unconditional one

    def latent_grid(self) -> tuple[int, int, int]:
        """(latent frames, h, w) of the generated video after patchifying."""
        patch_t, patch_h, patch_w = self.patch
        frames = (self.num_frames - 1) // self.temporal_ratio + 1
        return (frames // patch_t, self.image_size[0] // self.spatial_ratio // patch_h,
                self.image_size[1] // self.spatial_ratio // patch_w)

    def expected_query_grids(self, latent_hw=None) -> dict:
        return {s.name: self.latent_grid() for s in self.specs}

    def video_meta(self) -> dict:
        patch_t, _, patch = self.patch
        return {"temporal_ratio": self.temporal_ratio * patch_t, "spatial_ratio": self.spatial_ratio * patch}

    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None):
        self._knockout_relation(mode)
        return self.knockout(layers)

    def randomization_stages(self) -> list[tuple[str, list]]:
        """From the output side: the output layers, the blocks last to first, the transformer's other parts
        (embedders; LTX-2's audio stream, HunyuanVideo-1.5's token refiner), then the conditioning encoder
        (``conditioning_stages``)."""
        t = self.transformer
        out = [m for m in (t.norm_out, t.proj_out) if any(True for _ in m.parameters())]
        stages = [("transformer.out", out)]
        blocks = getattr(t, self.blocks_attr)
        stages += [(f"transformer.{self.blocks_attr}.{i}", [blocks[i]]) for i in reversed(range(len(blocks)))]
        rest = [m for n, m in t.named_children() if n not in ("norm_out", "proj_out", self.blocks_attr)
                and any(True for _ in m.parameters())]
        stages += [("transformer.in", rest), *self.conditioning_stages()]
        return [(name, mods) for name, mods in stages if mods]

    # ---- conditioning ----------------------------------------------------------------------------------------
    def prepare(self, batch: dict) -> DenoiseInputs:
        """context: the reference images in [-1, 1] (the first frame); the text conditioning rides in ``extra``."""
        reference = batch[schema.REFERENCE].to(self.device, torch.float32)
        frames = (self.num_frames - 1) // self.temporal_ratio + 1
        height, width = (side // self.spatial_ratio for side in self.image_size)
        latent_shape = (self.latent_channels, frames, height, width)
        return DenoiseInputs(concat=None, context=reference, uncond_context=torch.zeros_like(reference[:1]),
                             latent_shape=latent_shape, sample_ids=sample_ids(batch))

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
                raise StepDone

        try:
            with Hooks("predict_x0") as hooks:
                hooks.hook(self.transformer, at_point, pre=True, with_kwargs=True)
                hooks.hook(self.transformer, stop)
                self.pipe(**self._call_kwargs(inputs, {"guidance": guidance}), latents=x.to(self.dtype),
                          num_inference_steps=1, output_type="latent", return_dict=False)
        except StepDone:
            pass
        velocity = outputs[0]
        if len(outputs) == 2:
            velocity = outputs[1] + self.pipe.guidance_scale * (outputs[0] - outputs[1])
        return x - sigma * velocity.to(x.dtype)

    def _call_kwargs(self, inputs: DenoiseInputs, settings: dict) -> dict:
        n = inputs.context.shape[0]
        kwargs = dict(image=self.call_image(self._reference_image(inputs), n), **self.size_kwargs(),
                      **self.prompt_kwargs(n), **self.call_options())
        if settings["guidance"] is not None:
            kwargs.update(self.guidance_kwargs(float(settings["guidance"])))
        return kwargs

    def size_kwargs(self) -> dict:
        """The call's keyword arguments for the generated size (``image_size``)."""
        height, width = self.image_size
        return {"height": height, "width": width}

    def call_image(self, image, n: int):
        """The call's ``image`` for ``n`` rows of one reference (a pipeline that repeats one image itself)."""
        return image

    def guidance_kwargs(self, guidance: float) -> dict:
        """The call's keyword arguments for a guidance scale."""
        return {"guidance_scale": guidance}

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
            x, x_next = self._x, self.as_video(tensors["latents"])
            sigma, sigma_next = float(pipe.scheduler.sigmas[i]), float(pipe.scheduler.sigmas[i + 1])
            velocity = (x_next - x) / (sigma_next - sigma)   # the Euler step is the only change of the latents
            callback({"step": i, "t": float(t), "sigma": sigma, "sigma_next": sigma_next, "x": x, "x_next": x_next,
                      "eps": velocity, "denoised": x - sigma * velocity, "alpha_cumprod": None})
            return {}

        try:
            with Hooks("run_loop") as hooks:
                self._watch_calls(hooks)
                step_end = self.step_end_argument(hooks, None if callback is None else on_step_end)
                latents = self.pipe(**kwargs, num_inference_steps=int(settings["num_steps"]), generator=generators,
                                    output_type="latent", return_dict=False, **step_end)[0]
        finally:
            self.records_call, self._x = True, None
        return self.from_output(latents)

    def step_end_argument(self, hooks: Hooks, on_step_end) -> dict:
        """How the pipeline's call reports each step: its ``callback_on_step_end`` argument."""
        return {"callback_on_step_end": on_step_end}

    def as_video(self, latents: torch.Tensor) -> torch.Tensor:
        """The pipeline's step latents as [B, C, F, h, w] (unpacked already by default)."""
        return latents

    def from_output(self, latents: torch.Tensor) -> torch.Tensor:
        """The latents of the call's ``output_type="latent"`` in the space of the step latents (the same by
        default)."""
        return latents

    def _watch_calls(self, hooks: Hooks) -> None:
        """``records_call`` True for the first transformer call of each step (the conditional one), False for the
        unconditional call after it: the capture reads it before each call. The latents the step starts from (the
        first call's input before its condition channels) are kept for the step callback."""
        def before_call(module, args, kwargs):
            if self.records_call:
                self._x = kwargs["hidden_states"][:, :self.latent_channels]

        def after_call(module, args, output):
            self.records_call = False

        def step(*args, **kwargs):
            self.records_call = True
            return original(*args, **kwargs)

        self.records_call = True
        hooks.hook(self.transformer, before_call, pre=True, with_kwargs=True)
        hooks.hook(self.transformer, after_call)
        original = hooks.replace(self.pipe.scheduler, "step", step)
