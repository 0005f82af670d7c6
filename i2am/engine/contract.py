"""The adapter contract: every capability the engine, the samplers, the evaluators and the app read from a model
family's adapter, in one place.

``i2am.adapters._base.DiffusionAdapter`` implements all of it; optional capabilities have documented defaults there
(a family overrides what it has), so no caller asks an adapter whether it has a member. Code that also takes a bare
diffusers UNet or a pipeline (the capture, the token knockout, ``i2am.trace``) tells the two apart with
``isinstance(model, AttributionAdapter)`` once.

Members are methods or plain attributes (no property that computes from weights): a runtime ``isinstance`` check
reads each of them.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from i2am.engine.layers import SupportsAttribution


@runtime_checkable
class AttributionAdapter(SupportsAttribution, Protocol):
    """A model family's adapter. Inherited: ``cfg_layout``, ``attribution_layers()``, ``step_module``."""

    name: str | None
    guidance: Any                  # the default guidance (a number, None, or one value per step)
    sampler_defaults: dict         # scheduler, num_steps, guidance, eta, start_code (+ strength, paste)
    latent_encoding: str           # "mode" | "sample": how encode_images draws a latent (samplers read it)
    cfg_order: str                 # "uncond_cond" | "cond_uncond": the batch order of a CFG call
    records_call: bool             # False while a sampler makes a call that is not a step (the capture skips it)
    own_loop: bool                 # run_loop is the adapter's own loop (the re-running checks trust it)
    null_reference: str            # the R2G null counterfactual: "inputs" (a run on null_inputs) or "knockout"
    loads_checkpoints: bool        # load_checkpoint takes checkpoint files (False: a diffusers folder, model.path)
    joint_token_knockout: bool     # token_knockout acts inside joint attention (a diffusion transformer): no
                                   # context-token replacement, so the faithfulness removal "auto" knocks out
    video: bool                    # generates a video from the reference: video maps (docs/video_maps.md)

    # ---- conditioning and sampling
    def prepare(self, batch: dict) -> Any:
        """A dataset batch -> the denoiser inputs (``DenoiseInputs``)."""

    def denoise(self, x_t, t, inputs, guidance=None):
        """eps of one CFG-batched step-module call."""

    def predict_x0(self, x, t, inputs, guidance=None, alpha_cumprod=None):
        """One-step x0 prediction at a point of a trajectory (default: from ``denoise``'s eps and alpha_cumprod)."""

    def run_loop(self, inputs, sampler, callback=None):
        """Final latents of one sampling run (the sampler's loop, or the adapter's own where ``own_loop``)."""

    def sample(self, batch: dict, sampler=None, callback=None) -> dict:
        """{"images", "latents"} generated from a dataset batch."""

    def encode_images(self, images, sample_ids=None, role: str = "image"):
        """[-1, 1] images -> latents."""

    def decode_latents(self, latents):
        """Latents -> [-1, 1] images."""

    # ---- what the capture reads
    def cfg_layout_for(self, guidance) -> str:
        """The batch layout of a ``denoise`` call at ``guidance``."""

    def conditional_slice(self, batch: int, layout: str) -> slice:
        """The conditional rows of a denoiser batch whose call has ``layout`` (default: ``conditional_rows``)."""

    def attribution_capture(self, cfg) -> Any:
        """The capture context manager of this adapter (default: ``AttributionCapture`` on its layers)."""

    def default_sram_layers(self) -> tuple[str, ...]:
        """The layers ``capture.sram_layers=auto`` keeps full SRAMs of."""

    def expected_query_grids(self, latent_hw=None) -> dict:
        """Query grid of every hookable layer, from the architecture."""

    # ---- what the evaluators read
    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None) -> Any:
        """The reference-token removal context manager (default: ``TokenKnockout`` on the spatial layers)."""

    def null_inputs(self, inputs) -> Any:
        """The inputs of the R2G null run (default: the unconditional context in place of the context)."""

    def check_counterfactuals(self, variants) -> None:
        """Raise for R2G counterfactuals the adapter cannot honour (default: none refused)."""

    def randomization_stages(self) -> list:
        """The randomisation check's stages, output side first (default: the UNet's)."""

    # ---- checkpoints
    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False) -> Any:
        """Load original-layout or own weights (``CheckpointError`` where ``loads_checkpoints`` is False)."""

    def export_checkpoint(self) -> dict:
        """The weights in the original checkpoint layout."""
