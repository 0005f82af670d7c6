"""``i2am.trace(pipe)``: I2AM maps of a diffusers pipeline's calls, found without configuration.

    with i2am.trace(pipe) as tr:
        images = pipe(prompt_embeds=embeds, ip_adapter_image_embeds=[image_embeds]).images
    maps = tr.maps                                  # AttributionMaps of the last call (tr.calls: one per call)
    maps.relation("image:ip_adapter").r2g.ulam      # [B, h, w] on the generated grid

The trace finds the denoisers and their key streams (``i2am.engine.pipelines``), reads the number of steps and
the latent batch of each call from the pipeline's ``prepare_latents`` (so the conditional chunk of every denoiser
call follows the CFG of that call: 1, 2, or InstructPix2Pix's 3 chunks), and runs one ``AttributionCapture`` per
call. The pipeline's own processors compute every output, so images are bit-identical to an untraced call; all
processors and methods are restored on exit, also after an exception.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from i2am.engine import AttributionCapture, AttributionMaps, CaptureConfig
from i2am.engine.cfg_rows import chunk_rows
from i2am.engine.hooks import Hooks
from i2am.engine.pipelines import conditional_chunks, denoisers, frame_axis, layer_specs
from i2am.engine.render import overlay, to_image


class PipelineSource:
    """What ``AttributionCapture`` reads from a model, for a pipeline whose ``step_module`` is called once a step."""

    def __init__(self, pipe, specs, step_module, records_call=None):
        self.name = type(pipe).__name__
        self._specs = specs
        self.step_module = step_module
        self.cfg_layout = "none"   # unused: the conditional rows come from PipelineTrace.conditional
        self._records_call = records_call

    def attribution_layers(self):
        return self._specs

    @property
    def records_call(self) -> bool:
        """Whether the step module's call in progress is a step to record (``AttributionCapture`` reads it once per
        call): every call, unless the trace gives a test (pipelines that run CFG as separate calls)."""
        return True if self._records_call is None else self._records_call()


class PipelineTrace:
    """Context manager returned by ``i2am.trace``; see the module docstring.

    capture: a CaptureConfig template (directions, layers, time groups, SRAM layers); ``num_steps`` is read from
        each call unless ``num_steps`` is given. Layers are named ``<relation>/<module path>``.
    per_token: add one single-token relation "image:ip_adapter[t]" per IP-Adapter image token (R2G per token).
    """

    def __init__(self, pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None,
                 per_token: bool = False):
        self.pipe = pipe
        self.template = capture or CaptureConfig()
        self.num_steps = num_steps
        self.pipeline_class = type(pipe).__name__
        self._chunks = conditional_chunks(self.pipeline_class)
        self._frame_axis = frame_axis(self.pipeline_class)
        self._frames: int | None = None
        self._layers = self._find_layers(per_token)   # raises for unsupported processors before anything is patched
        self._capture = None
        self._latent_batch: int | None = None
        self._finished: list[AttributionMaps] = []
        self._awaiting_first_step = False
        self._layout = None
        self._hooks = Hooks("i2am.trace")

    def _find_layers(self, per_token: bool) -> list:
        """The captured layers (each with a ``name``), found before anything is patched."""
        return layer_specs(self.pipe, per_token)

    def _step_module(self):
        """The module one call of which is one denoising step."""
        return denoisers(self.pipe)[0][1]

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> PipelineTrace:
        self._hooks.activate(self._install)
        return self

    def _install(self, hooks: Hooks) -> None:
        original = self.pipe.prepare_latents   # bound method of the pipeline class

        def prepare_latents(*args, **kwargs):
            self._start_call()
            out = original(*args, **kwargs)
            latents = out[0] if isinstance(out, (tuple, list)) else out
            # a UNet folding the frames into the batch has one row per (sample, frame) in each chunk
            self._frames = None if self._frame_axis is None else latents.shape[self._frame_axis]
            self._latent_batch = latents.shape[0] * (self._frames or 1)
            return out

        hooks.replace(self.pipe, "prepare_latents", prepare_latents)   # on the instance: the class is untouched
        # the step count is known once the denoising loop starts: this hook, registered before any capture's own,
        # sets it at the first step of each call
        hooks.hook(self._step_module(), self._on_first_step, pre=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._finish_call(keep=exc_type is None)   # after an exception: restore, never mask it
        finally:
            self._hooks.restore()

    def _start_call(self) -> None:
        self._finish_call()
        capture = self._new_capture(self._config(self.num_steps or 1))
        capture.__enter__()
        self._capture = capture
        self._awaiting_first_step = True

    def _new_capture(self, cfg: CaptureConfig):
        return AttributionCapture(PipelineSource(self.pipe, self._layers, self._step_module()), cfg,
                                  conditional=self.conditional, frames_in_batch=lambda: self._frames)

    def _config(self, steps: int) -> CaptureConfig:
        return replace(self.template, num_steps=steps, time_groups=min(self.template.time_groups, steps))

    def _on_first_step(self, module, args) -> None:
        if not self._awaiting_first_step:
            return
        self._awaiting_first_step = False
        if self.num_steps is None and self._capture is not None:
            self._capture.cfg = self._config(self._scheduled_steps())

    def _finish_call(self, keep: bool = True) -> None:
        self._awaiting_first_step = False
        capture, self._capture = self._capture, None
        if capture is None:
            return
        try:
            if keep and capture.steps_seen:
                self._finished.append(self._maps_of(capture))
        finally:
            capture.__exit__(None, None, None)

    def _scheduled_steps(self) -> int:
        """Denoiser calls of the call in progress: the pipeline's ``_num_timesteps`` (set before its loop), else the
        scheduler's timesteps from its begin index (img2img and inpainting start part-way)."""
        steps = getattr(self.pipe, "_num_timesteps", None)
        if steps:
            return int(steps)
        scheduler = self.pipe.scheduler
        timesteps = getattr(scheduler, "timesteps", None)
        if timesteps is None:
            raise RuntimeError(f"{self.pipeline_class}: the scheduler has no timesteps when latents are prepared; "
                               f"pass i2am.trace(pipe, num_steps=...)")
        begin = getattr(scheduler, "begin_index", None) or 0
        return max(1, len(timesteps) - begin)

    # ---------------------------------------------------------------- CFG rows
    def conditional(self, x: torch.Tensor) -> torch.Tensor:
        """The conditional rows of a denoiser batch: its chunk count is batch / latent batch of this call."""
        if self._latent_batch is None or x.shape[0] % self._latent_batch:
            raise RuntimeError(f"{self.pipeline_class}: a denoiser batch of {x.shape[0]} rows does not split into "
                               f"chunks of the latent batch {self._latent_batch}")
        chunks = x.shape[0] // self._latent_batch
        if chunks not in self._chunks:
            raise RuntimeError(f"{self.pipeline_class}: {chunks} batch chunks per denoiser call; i2am.trace knows "
                               f"the layouts {sorted(self._chunks)} for this pipeline (i2am.engine.pipelines)")
        self._layout = f"chunk {self._chunks[chunks]} of {chunks}"
        return x[chunk_rows(x.shape[0], chunks, self._chunks[chunks])]

    # ---------------------------------------------------------------- results
    def _maps_of(self, capture: AttributionCapture) -> AttributionMaps:
        maps = capture.maps()
        maps.meta["cfg_layout"] = self._layout   # the conditional chunk of the last denoiser call
        return maps

    @property
    def relations(self) -> list[str]:
        return list(dict.fromkeys(s.relation for s in self._layers))

    @property
    def layers(self) -> list[str]:
        return [s.name for s in self._layers]

    @property
    def calls(self) -> list[AttributionMaps]:
        """One AttributionMaps per pipeline call so far (the call in progress included)."""
        current = [self._maps_of(self._capture)] if self._capture is not None and self._capture.steps_seen else []
        return self._finished + current

    @property
    def maps(self) -> AttributionMaps:
        calls = self.calls
        if not calls:
            raise RuntimeError(f"i2am.trace: no {self.pipeline_class} call has run inside the trace yet")
        return calls[-1]


def overlay_maps(images, grid_maps: torch.Tensor, direction: str = "r2g", preset: str = "clean") -> list[np.ndarray]:
    """Overlays of grid maps [B, h, w] (e.g. ``maps.relation("text").r2g.ulam``) on a pipeline's output images
    (PIL images or uint8 arrays [H, W, 3]): one uint8 RGB array per image (``to_image`` at the image size)."""
    out = []
    for image, grid in zip(images, grid_maps):
        array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        attribution = to_image(grid[None], array.shape[:2], direction=direction, preset=preset)[0]
        out.append(overlay(array, attribution))
    return out
