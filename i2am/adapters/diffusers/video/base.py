"""What every ``model=diffusers`` image-to-video adapter shares (``VideoPipelineAdapter``): the dataset's
``reference`` as the pipeline's ``image``, a fixed text embedding, one reference per call (``data.batch_size=1``),
sampling through the pipeline's own call, the settings it refuses, and the capture whose maps carry the video's
compression ratios. The families (``transformer`` with its pipelines ``wan``, ``ltx2``, ``hunyuan_video15``;
``folded`` with ``i2vgen_xl``, ``svd``) say what their pipeline's call, layers, knockout and latents are."""
from __future__ import annotations

import torch

from i2am.adapters._base import DenoiseInputs, DiffusionAdapter
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters.diffusers.dit._base import check_own_call_settings, one_reference, pil_image
from i2am.engine.capture import AttributionCapture
from i2am.engine.layers import LayerSpec


class StepDone(Exception):
    """Stops a pipeline call once its first step's denoiser calls have run (the adapters' ``predict_x0``)."""


class VideoCapture(AttributionCapture):
    """``AttributionCapture`` whose maps carry the video's compression ratios (``maps.meta["video"]``, as
    ``i2am.trace`` writes them), which the frame strips read."""

    def __init__(self, adapter: VideoPipelineAdapter, cfg, **options):
        super().__init__(adapter, cfg, **{"latent_grid": adapter.packed_latent_grid, **options})
        self._video = adapter.video_meta()

    def maps(self):
        maps = super().maps()
        maps.meta["video"] = dict(self._video)
        return maps


class VideoPipelineAdapter(DiffusionAdapter):
    """An image-to-video pipeline run through its own call. Subclasses set ``pipeline_class`` and ``relations`` (the
    first is the default ``model.relation``; ``image_relations`` those the reference's tokens are keys of) and
    define the family parts (``frames_of``, ``video_meta``, ``prepare``, ``run_loop``, ...)."""

    pipeline_class: str
    relations: tuple[str, ...] = ("image:reference", "text")
    image_relations: tuple[str, ...] = ("image:reference",)
    own_loop = True
    loads_checkpoints = False
    null_reference = "knockout"   # the R2G null counterfactual: every image token of the relation knocked out
    video = True
    predicts_x0 = True            # the faithfulness check's proxy mode is defined
    packed_latent_grid = None     # (args, kwargs) of a step-module call fed packed tokens -> its latent grid

    def __init__(self, pipe, size: str, guidance: float | None, image_size, num_frames: int, num_steps: int,
                 relation: str | None):
        super().__init__(size, guidance, image_size, start_code="noise", num_steps=num_steps)
        if type(pipe).__name__ != self.pipeline_class:
            raise ValueError(f"{type(self).__name__} runs {self.pipeline_class}, got {type(pipe).__name__}")
        relation = relation or self.relations[0]
        if relation not in self.relations:
            raise ValueError(f"model.relation={relation!r}: {self.pipeline_class}'s cross-attention reads "
                             f"{list(self.relations)}")
        self.pipe, self.relation = pipe, relation
        self.num_frames = self.frames_of(int(num_frames))
        self.sampler_defaults["scheduler"] = type(pipe.scheduler).__name__
        pipe.set_progress_bar_config(disable=True)

    def frames_of(self, num_frames: int) -> int:
        """The frames a call generates with ``num_frames`` (raises for counts the pipeline does not generate)."""
        if num_frames < 1:
            raise ValueError(f"model.num_frames={num_frames}: {self.pipeline_class} generates at least one frame")
        return num_frames

    def video_meta(self) -> dict:  # family
        """{"temporal_ratio", "spatial_ratio"}: video frames per latent frame, pixels per query cell."""
        raise NotImplementedError

    # ---- what the attribution engine reads -------------------------------------------------------------------
    def attribution_layers(self) -> list[LayerSpec]:
        return list(self.specs)

    def default_sram_layers(self) -> tuple[str, ...]:
        return ()   # SRAM is for image layers (docs/video_maps.md): a video layer's query has a frame too

    def attribution_capture(self, cfg) -> VideoCapture:
        return VideoCapture(self, cfg)

    def _knockout_relation(self, mode: str) -> None:
        """Raise unless the token knockout can test this run's maps."""
        if mode != "knockout":
            raise NotImplementedError(f"{self.pipeline_class}: image-token removal {mode!r} is not defined; use "
                                      f"evaluators.faithfulness.removal=knockout")
        if self.relation not in self.image_relations:
            raise NotImplementedError(f"{self.pipeline_class}: token knockout removes the reference's image tokens; "
                                      f"model.relation={self.relation!r} maps would not be tested by it (use "
                                      f"model.relation={self.image_relations[0]})")

    def check_counterfactuals(self, variants) -> None:
        if self.relation not in self.image_relations:
            raise ValueError(f"R2G counterfactuals change the reference image, not the text that the maps of "
                             f"relation {self.relation!r} attribute to; set model.relation={self.image_relations[0]} "
                             f"or evaluators.faithfulness.counterfactual=false")

    # ---- sampling --------------------------------------------------------------------------------------------
    def denoise(self, x_t, t, inputs, guidance=None):
        raise NotImplementedError(f"{self.pipeline_class} samples through its own pipeline call "
                                  f"({type(self).__name__}.run_loop)")

    def _check_settings(self, settings: dict) -> None:
        check_own_call_settings(self.pipeline_class, self.sampler_defaults["scheduler"], settings)

    def _reference_image(self, inputs: DenoiseInputs):
        """The call's ``image``: the one reference of ``inputs`` (context in [-1, 1]) as a PIL image."""
        return pil_image(one_reference((inputs.context.float() + 1) / 2, self.pipeline_class))

    @torch.no_grad()
    def sample(self, batch: dict, sampler=None, callback=None) -> dict:
        """{"images": the video [B, 3, T, H, W] in [-1, 1], "latents": the pipeline's latents}."""
        from i2am.sampling.sampler import Sampler

        latents = self.run_loop(self.prepare(batch), sampler or Sampler(), callback=callback)
        return {"images": self.decode_latents(latents), "latents": latents}

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False):
        raise CheckpointError(f"model=diffusers loads its weights from model.path (a diffusers folder), not {source}")


def negative_of(path, embeds: torch.Tensor) -> torch.Tensor:
    """The file's ``negative_prompt_embeds`` (zeros without it, or without a file), shaped like ``embeds``."""
    if path is None:
        return torch.zeros_like(embeds)
    from safetensors.torch import load_file

    negative = load_file(str(path)).get("negative_prompt_embeds")
    if negative is None:
        return torch.zeros_like(embeds)
    negative = negative.reshape(1, *negative.shape[-2:])
    if negative.shape != embeds.shape:
        raise ValueError(f"model.prompt_embeds={path}: negative_prompt_embeds {tuple(negative.shape)} and "
                         f"prompt_embeds {tuple(embeds.shape)} differ in shape")
    return negative
