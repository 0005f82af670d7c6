"""``model=diffusers`` for ``I2VGenXLPipeline``, whose UNet folds the frames into the batch.

What the dataset batch becomes: the ``reference`` image is the pipeline's ``image``: its VAE latent is the first
frame's condition and, embedded to a fixed grid, the "image:reference" tokens of every spatial cross-attention's
context (``i2am.engine.pipelines.context_parts``); its CLIP embedding the "image:clip" tokens after them. A video of
``num_frames`` frames at ``image_size`` is generated from noise; the dataset's ``image`` and masks are not read. No
text encoder is run: ``prompt_embeds`` and ``negative_prompt_embeds`` are a fixed embedding of
``I2VGEN_TEXT_TOKENS`` tokens, zeros by default, or read from ``model.prompt_embeds`` (a safetensors file with those
keys). One reference per call: ``data.batch_size=1``.

The pipeline samples the reference's VAE latent without a generator; here it is sampled once per call from a
generator seeded by the sample id (``sample_seed(0, sample_id)``) and shared by the call's rows, so every re-run of a
sample (the faithfulness check's, whatever their batch) conditions on the same latent.

Sampling is the pipeline's own call: the re-running checks re-run it with the same noise, drawn per sample from
``sample_seed(sampler.seed, sample_id)``. CFG is one UNet call on [negative, positive] chunks whose rows are (chunk,
sample, frame) (``i2am.adapters.diffusers.video.folded``); the maps are of one relation (``model.relation``:
"image:reference", the default, "image:clip" or "text"). The faithfulness check removes the relation's image tokens
(``TokenKnockout``); its proxy mode predicts x0 in one UNet call of the pipeline.
"""
from __future__ import annotations

import torch

from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters.diffusers.dit._prompts import read_prompt_embeds
from i2am.adapters.diffusers.video.base import StepDone, negative_of
from i2am.adapters.diffusers.video.folded import FoldedFramesAdapter
from i2am.data import schema
from i2am.engine.hooks import Hooks
from i2am.sampling.sampler import sample_seed

I2VGEN_TEXT_TOKENS = 77   # the CLIP tokenizer's padded prompt length


class I2VGenXLAdapter(FoldedFramesAdapter):
    """I2VGen-XL (module docstring). ``guidance`` is the pipeline's ``guidance_scale`` (None: its default, 9.0;
    > 1 stacks the negative and positive chunks in one UNet call)."""

    pipeline_class = "I2VGenXLPipeline"
    relations = ("image:reference", "image:clip", "text")
    image_relations = ("image:reference", "image:clip")
    default_guidance = 9.0

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(704, 1280),
                 num_frames: int = 16, num_steps: int = 50, relation: str | None = None,
                 prompt_embeds: str | None = None):
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation)
        embeds, _ = read_prompt_embeds(prompt_embeds, I2VGEN_TEXT_TOKENS, int(self.unet.config.cross_attention_dim),
                                       None)
        self.register_buffer("prompt_embeds", embeds, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative_of(prompt_embeds, embeds), persistent=False)
        self.eval()

    # ---- conditioning ----------------------------------------------------------------------------------------
    def prepare(self, batch: dict) -> DenoiseInputs:
        """context: the reference images in [-1, 1]; latent_shape: [C, F, h, w] of the pipeline's latents."""
        reference = batch[schema.REFERENCE].to(self.device, torch.float32)
        _, h, w = self.latent_grid()
        return DenoiseInputs(concat=None, context=reference, uncond_context=torch.zeros_like(reference[:1]),
                             latent_shape=(int(self.unet.config.in_channels), self.num_frames, h, w),
                             sample_ids=sample_ids(batch))

    def _call_kwargs(self, inputs: DenoiseInputs, settings: dict) -> dict:
        n = inputs.context.shape[0]
        height, width = self.image_size
        kwargs = dict(image=[self._reference_image(inputs)] * n, height=height, width=width,
                      num_frames=self.num_frames, prompt_embeds=self.prompt_embeds.expand(n, -1, -1),
                      negative_prompt_embeds=self.negative_prompt_embeds.expand(n, -1, -1))
        if settings["guidance"] is not None:
            kwargs["guidance_scale"] = float(settings["guidance"])
        return kwargs

    def _seeded_reference_latent(self, hooks: Hooks, inputs: DenoiseInputs) -> None:
        """The reference's VAE latent of the call: sampled once, from a generator seeded by the sample id, for every
        row (module docstring)."""
        seed = sample_seed(0, inputs.sample_ids[0])

        def prepare_image_latents(image, device, num_frames, num_videos_per_prompt):
            devices = [image.device] if image.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                latents = original(image[:1], device, num_frames, num_videos_per_prompt)
            return latents.repeat_interleave(image.shape[0], dim=0)   # (chunk, sample) rows

        original = hooks.replace(self.pipe, "prepare_image_latents", prepare_image_latents)

    # ---- sampling --------------------------------------------------------------------------------------------
    def _x0(self, x: torch.Tensor, output: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) of the scheduler's prediction type from the UNet's output at timestep ``t``."""
        a = self.pipe.scheduler.alphas_cumprod[int(t)].to(x.device, x.dtype)
        kind = self.pipe.scheduler.config.prediction_type
        if kind == "epsilon":
            return (x - (1 - a).sqrt() * output) / a.sqrt(), output
        if kind == "v_prediction":
            return a.sqrt() * x - (1 - a).sqrt() * output, a.sqrt() * output + (1 - a).sqrt() * x
        raise NotImplementedError(f"{self.pipeline_class}: scheduler prediction_type {kind!r} is not supported; "
                                  f"use a scheduler predicting epsilon or v")

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t, inputs: DenoiseInputs, guidance=None,
                   alpha_cumprod=None) -> torch.Tensor:
        """x0 at a point of a trajectory (``x`` the latents [B, C, F, h, w], ``t`` the scheduler timestep): the
        pipeline call is started with ``latents=x``, its UNet call is given the timestep ``t`` and the call is stopped
        after it; the chunks are combined as the pipeline does. The faithfulness check's proxy mode."""
        outputs = []

        def at_point(module, args, kwargs):
            return (args[0], torch.as_tensor(t), *args[2:]), kwargs

        def stop(module, args, output):
            outputs.append(output[0] if isinstance(output, tuple) else output.sample)
            raise StepDone

        try:
            with Hooks("predict_x0") as hooks:
                self._seeded_reference_latent(hooks, inputs)
                hooks.hook(self.unet, at_point, pre=True, with_kwargs=True)
                hooks.hook(self.unet, stop)
                self.pipe(**self._call_kwargs(inputs, {"guidance": guidance}), latents=x.to(self.dtype),
                          num_inference_steps=1, output_type="latent", return_dict=False)
        except StepDone:
            pass
        output = outputs[0]
        if self.pipe.do_classifier_free_guidance:
            uncond, cond = output.chunk(2)
            output = uncond + self.pipe.guidance_scale * (cond - uncond)
        return self._x0(x, output.to(x.dtype), t)[0]

    @torch.no_grad()
    def run_loop(self, inputs: DenoiseInputs, sampler, callback=None) -> torch.Tensor:
        """Latents [B, C, F, h, w] of one pipeline call on ``inputs`` (every row the same reference); the noise of
        sample i from a generator seeded by ``sample_seed(sampler.seed, sample_ids[i])``. ``callback`` gets per step
        {"step", "t", "x", "x_next", "eps", "denoised", "alpha_cumprod"}, read at the scheduler's step."""
        settings = sampler.settings(self)
        self._check_settings(settings)
        generators = [torch.Generator().manual_seed(sample_seed(int(sampler.seed), sid)) for sid in inputs.sample_ids]
        steps = []

        def step(output, t, x, *args, **kwargs):
            result = original(output, t, x, *args, **kwargs)
            if callback is not None:   # rows (sample, frame) -> latents [B, C, F, h, w]
                video = lambda v: v.unflatten(0, (-1, self.num_frames)).transpose(1, 2)
                x0, eps = self._x0(video(x), video(output), t)
                callback({"step": len(steps), "t": int(t), "x": video(x), "x_next": video(result.prev_sample),
                          "eps": eps, "denoised": x0,
                          "alpha_cumprod": self.pipe.scheduler.alphas_cumprod[int(t)].to(x.dtype)})
            steps.append(int(t))
            return result

        with Hooks("run_loop") as hooks:
            self._seeded_reference_latent(hooks, inputs)
            original = hooks.replace(self.pipe.scheduler, "step", step)
            return self.pipe(**self._call_kwargs(inputs, settings), num_inference_steps=int(settings["num_steps"]),
                             generator=generators, output_type="latent", return_dict=False)[0]

    # ---- videos <-> latents ----------------------------------------------------------------------------------
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, F, h, w] -> the video [B, 3, F, H, W] in [-1, 1], as the pipeline decodes them."""
        return self.pipe.decode_latents(latents.to(self.vae.dtype), decode_chunk_size=1).clamp(-1, 1)

