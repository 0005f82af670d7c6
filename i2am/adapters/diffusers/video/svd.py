"""``model=diffusers`` for ``StableVideoDiffusionPipeline``, whose UNet folds the frames into the batch
(``i2am.adapters.diffusers.video.folded``).

What the dataset batch becomes: the ``reference`` image is the pipeline's ``image``: its CLIP embedding is the one
token of every spatial cross-attention's context (relation "image:clip"), its VAE latent (after the call's noise
augmentation, drawn from the sample's generator) the condition channels of every frame. A video of ``num_frames``
frames at ``image_size`` is generated from noise; no text is read. One reference per call: ``data.batch_size=1``.
``guidance`` is the call's ``max_guidance_scale`` (the per-frame guidance rises from ``min_guidance_scale`` 1.0 to it).

One context token makes G2R identically 1 (a softmax over one token): only R2G maps are recorded, so the faithfulness
check has no G2R order to delete tokens by and runs its R2G counterfactuals only. Their ``null`` run knocks the CLIP
token out of every spatial cross-attention (the layers then add only their output bias: the video without the
reference's CLIP conditioning, its VAE latent still in the input channels); ``swap`` and ``rotated`` change the
reference itself. Without G2R curves there is no proxy mode: ``predict_x0`` and the step callback are refused.
"""
from __future__ import annotations

import torch

from i2am.adapters._base import DenoiseInputs, sample_ids
from i2am.adapters.diffusers.video.folded import FoldedFramesAdapter
from i2am.data import schema
from i2am.sampling.sampler import sample_seed

NO_G2R = ("Stable Video Diffusion's cross-attention reads one token (the reference's CLIP embedding), so it has no "
          "G2R map to order token deletions by")


class StableVideoDiffusionAdapter(FoldedFramesAdapter):
    """Stable Video Diffusion (module docstring)."""

    pipeline_class = "StableVideoDiffusionPipeline"
    relations = ("image:clip",)
    image_relations = ("image:clip",)
    default_guidance = 3.0
    predicts_x0 = False          # no G2R curves, so no proxy mode: the startup check leaves it out

    def __init__(self, pipe, size: str = "full", guidance: float | None = None, image_size=(576, 1024),
                 num_frames: int = 14, num_steps: int = 25, relation: str | None = None,
                 prompt_embeds: str | None = None):
        if prompt_embeds is not None:
            raise ValueError(f"model.prompt_embeds={prompt_embeds}: StableVideoDiffusionPipeline reads no text; "
                             f"leave it null")
        super().__init__(pipe, size, guidance, image_size, num_frames, num_steps, relation)
        self.eval()

    def prepare(self, batch: dict) -> DenoiseInputs:
        """context: the reference images in [-1, 1]; latent_shape: [F, C, h, w] of the pipeline's latents."""
        reference = batch[schema.REFERENCE].to(self.device, torch.float32)
        frames, h, w = self.latent_grid()
        return DenoiseInputs(concat=None, context=reference, uncond_context=torch.zeros_like(reference[:1]),
                             latent_shape=(frames, int(self.unet.config.out_channels), h, w),
                             sample_ids=sample_ids(batch))

    def _call_kwargs(self, inputs: DenoiseInputs, settings: dict) -> dict:
        height, width = self.image_size
        kwargs = dict(image=[self._reference_image(inputs)] * inputs.context.shape[0], height=height, width=width,
                      num_frames=self.num_frames)
        if settings["guidance"] is not None:
            kwargs["max_guidance_scale"] = float(settings["guidance"])
        return kwargs

    def predict_x0(self, x, t, inputs, guidance=None, alpha_cumprod=None):
        raise NotImplementedError(f"{NO_G2R}: the faithfulness proxy mode is not defined")

    @torch.no_grad()
    def run_loop(self, inputs: DenoiseInputs, sampler, callback=None) -> torch.Tensor:
        """Latents [B, F, C, h, w] of one pipeline call on ``inputs`` (every row the same reference); the noise of
        sample i (and of its reference's augmentation) from a generator seeded by ``sample_seed(sampler.seed,
        sample_ids[i])``."""
        if callback is not None:
            raise NotImplementedError(f"{NO_G2R}: no step callback (it feeds the G2R curves' proxy mode)")
        settings = sampler.settings(self)
        self._check_settings(settings)
        generators = [torch.Generator().manual_seed(sample_seed(int(sampler.seed), sid)) for sid in inputs.sample_ids]
        return self.pipe(**self._call_kwargs(inputs, settings), num_inference_steps=int(settings["num_steps"]),
                         generator=generators, output_type="latent", return_dict=False)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, F, C, h, w] -> the video [B, 3, F, H, W] in [-1, 1], as the pipeline decodes them."""
        return self.pipe.decode_latents(latents.to(self.vae.dtype), latents.shape[1],
                                        decode_chunk_size=latents.shape[1]).float().clamp(-1, 1)
