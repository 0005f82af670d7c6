"""The common base of every adapter (the k-diffusion ``external.py`` idea): what is the same whatever the denoiser.

An adapter owns its modules, turns a dataset batch into model inputs (``prepare``), runs one CFG-batched denoiser
call per step (``denoise``) or its own loop (``run_loop``), tells the attribution engine which layers to hook
(``attribution_layers``) and converts its weights from and to the original checkpoint layout. The full list of
what callers read is the contract ``i2am.engine.contract.AttributionAdapter``; this base gives every optional
capability its default. The denoiser's anatomy lives in the sibling bases: ``_unet_base.UNetAdapter`` (UNet
families) and ``diffusers.dit._base.DiffusersTransformerAdapter`` (diffusion transformers).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from i2am.adapters._checkpoint import CheckpointError, LoadReport, compare, read_state_dict
from i2am.adapters._convert import Rule, convert_to_model, convert_to_original
from i2am.data import schema
from i2am.engine.capture import AttributionCapture
from i2am.engine.cfg_rows import conditional_rows, layout_for
from i2am.engine.knockout import TokenKnockout
from i2am.engine.layers import LayerSpec


@dataclass
class DenoiseInputs:
    """Everything the denoiser needs besides the noisy latent, per sample (batch first).

    concat: channels appended to the noisy latent ([B, C, h, w]) or None.
    context / uncond_context: cross-attention tokens [B, L, D] with and without the reference.
    extra: further per-sample inputs of the step module (e.g. StableVITON's garment latent).
    start_image: the image whose latent a ``q_sample`` start code noises (StableVITON: the person image) and that
        the custom DDIM pastes outside ``paste_mask``.
    paste_mask: the generation region on the latent grid (1 = generate) for the custom DDIM's paste, or None.
    """

    concat: torch.Tensor | None
    context: torch.Tensor
    uncond_context: torch.Tensor
    latent_shape: tuple[int, int, int]
    sample_ids: list[str]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    start_image: torch.Tensor | None = None
    paste_mask: torch.Tensor | None = None


LATENT_ENCODINGS = ("mode", "sample")


def sample_ids(batch: dict) -> list[str]:
    n = batch[schema.IMAGE].shape[0]
    return [str(s) for s in batch.get(schema.SAMPLE_ID, [str(i) for i in range(n)])]


class DiffusionAdapter(nn.Module):
    """Common base of the model families. Subclasses set the modules and implement the ``# family`` methods."""

    cfg_order = "uncond_cond"        # batch order when CFG is on: PBE "uncond_cond", the custom model "cond_uncond"
    ignorable_keys: tuple[str, ...] = ()   # fnmatch patterns of original keys accepted and ignored by the loader
    latent_scale: float              # the VAE latent scaling (set by the sibling bases)
    # False while a sampler makes a call that is not a step (sampling.schedule.unrecorded_call)
    records_call = True
    own_loop = False      # True where ``run_loop`` is the adapter's own loop (the re-running checks then trust it)
    null_reference = "inputs"   # the R2G null counterfactual: a run on ``null_inputs``, or "knockout" (every
                                # spatial reference token knocked out)
    loads_checkpoints = True    # False where the weights come from a diffusers folder (model.path) only
    joint_token_knockout = False   # True where token_knockout acts inside joint attention (diffusion transformers)
    video = False         # True where the model generates a video from the reference (maps with a frame axis)

    def __init__(self, size: str, guidance: float | None, image_size: tuple[int, int],
                 start_code: str = "noise", num_steps: int = 50, latent_encoding: str = "mode",
                 encoding_seed: int = 0):
        super().__init__()
        if latent_encoding not in LATENT_ENCODINGS:
            raise ValueError(f"latent_encoding={latent_encoding!r}; choose from {LATENT_ENCODINGS}")
        self.latent_encoding = latent_encoding
        self.encoding_seed = int(encoding_seed)
        self.size = size
        self.name = None
        self.guidance = guidance
        self.image_size = tuple(image_size)
        self.sampler_defaults = dict(scheduler="ddim", num_steps=num_steps, guidance=guidance, eta=0.0,
                                     start_code=start_code)

    # ---- what the attribution engine reads -------------------------------------------------------------------
    @property
    def step_module(self) -> nn.Module:  # family
        """The module whose forward call is one denoising step."""
        raise NotImplementedError

    def attribution_layers(self) -> list[LayerSpec]:  # family
        raise NotImplementedError

    def cfg_layout_for(self, guidance) -> str:
        """The batch layout of a ``denoise`` call with this guidance: ``cfg_order`` with CFG, else "none"."""
        return layout_for(self.cfg_order, guidance)

    @property
    def cfg_layout(self) -> str:
        """The batch layout at the adapter's default guidance."""
        return self.cfg_layout_for(self.guidance)

    def conditional_slice(self, batch: int, layout: str) -> slice:
        """The conditional rows of a denoiser batch of a call with ``layout``; adapters whose calls stack more than
        two chunks (InstructPix2Pix) override it."""
        return conditional_rows(batch, layout)

    def attribution_capture(self, cfg):
        """The capture of this adapter: ``AttributionCapture`` on its cross-attention layers by default."""
        return AttributionCapture(self, cfg)

    def default_sram_layers(self) -> tuple[str, ...]:
        """The layers ``capture.sram_layers=auto`` keeps full SRAMs of: the middle one among the layers with spatial
        reference tokens (outside the mid block); none for single-token models. Families with a paper choice
        override this (custom model: decoder layer 2; StableVITON: warp block 4)."""
        spatial = [s.name for s in self.attribution_layers() if s.ref_grid is not None and not s.mid]
        return (spatial[len(spatial) // 2],) if spatial else ()

    def expected_query_grids(self, latent_hw: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:  # family
        raise NotImplementedError

    # ---- what the evaluators read ----------------------------------------------------------------------------
    def token_knockout(self, mode: str = "knockout", replacement=None, layers=None):
        """Reference-token removal: ``TokenKnockout`` over the spatial-reference cross-attention layers."""
        return TokenKnockout(self, mode=mode, replacement=replacement, layers=layers)

    def null_inputs(self, inputs: DenoiseInputs) -> DenoiseInputs:
        """The inputs of the R2G null run: the unconditional context in place of the context."""
        return dataclasses.replace(inputs, context=inputs.uncond_context.expand_as(inputs.context).clone())

    def check_counterfactuals(self, variants) -> None:
        """Raise for R2G counterfactuals this adapter cannot honour; every one is honoured by default."""

    def randomization_stages(self) -> list[tuple[str, list[nn.Module]]]:  # family
        """The randomisation check's stages, output side first."""
        raise NotImplementedError

    # ---- images <-> latents ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def encode_images(self, images: torch.Tensor, sample_ids: list[str] | None = None,
                      role: str = "image") -> torch.Tensor:
        """[-1, 1] images -> scaled latents.

        ``latent_encoding="mode"`` (default): the posterior mean, deterministic. ``"sample"``: a posterior sample
        mean + std * noise as the originals draw it (LDM ``get_first_stage_encoding``, the custom model's encoder),
        with the noise of sample i from a generator seeded by ``sample_seed(encoding_seed, f"{id_i}/{role}")``, so
        each image of each sample gets its own reproducible draw whatever the batch.
        """
        images = images.to(self.device, self.dtype)
        posterior = self.vae.encode(images).latent_dist
        if self.latent_encoding == "mode":
            return posterior.mode() * self.latent_scale
        from i2am.sampling.sampler import sample_seed
        ids = sample_ids if sample_ids is not None else [str(i) for i in range(images.shape[0])]
        noise = torch.stack([torch.randn(tuple(posterior.mean.shape[1:]), generator=torch.Generator().manual_seed(
            sample_seed(self.encoding_seed, f"{sid}/{role}"))) for sid in ids]).to(posterior.mean)
        return (posterior.mean + posterior.std * noise) * self.latent_scale

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.latent_scale).sample.clamp(-1, 1)

    # ---- denoising -------------------------------------------------------------------------------------------
    def prepare(self, batch: dict) -> DenoiseInputs:  # family
        raise NotImplementedError

    def denoise(self, x_t: torch.Tensor, t, inputs: DenoiseInputs, guidance: float | None = None) -> torch.Tensor:
        raise NotImplementedError  # family

    def predict_x0(self, x: torch.Tensor, t, inputs: DenoiseInputs, guidance=None, alpha_cumprod=None):
        """The one-step x0 prediction at a point of a trajectory, from ``denoise``'s eps and the point's
        ``alpha_cumprod`` (the faithfulness check's proxy mode); flow-matching adapters override it."""
        eps = self.denoise(x, torch.tensor(t, device=x.device), inputs, guidance=guidance)
        return (x - (1 - alpha_cumprod).sqrt() * eps) / alpha_cumprod.sqrt()

    def run_loop(self, inputs, sampler, callback=None) -> torch.Tensor:
        """Final latents of one sampling run on prepared ``inputs`` (noise fixed by the sample ids). The
        faithfulness and randomisation checks re-run the model through this; adapters that sample with a loop of
        their own override it (and set ``own_loop``)."""
        return sampler(self, inputs, callback=callback)

    @torch.no_grad()
    def sample(self, batch: dict, sampler=None, callback=None) -> dict:
        """Generate from a dataset batch: {"images": [B, 3, H, W] in [-1, 1], "latents": [B, C, h, w]}."""
        from i2am.sampling.sampler import Sampler
        sampler = sampler or Sampler()
        inputs = self.prepare(batch)
        latents = sampler(self, inputs, callback=callback)
        return {"images": self.decode_latents(latents), "latents": latents}

    # ---- checkpoints -----------------------------------------------------------------------------------------
    def original_rules(self) -> list[Rule]:  # family
        """Conversion rules between the original checkpoint layout and ``self.state_dict()``."""
        raise NotImplementedError

    def original_extras(self) -> dict[str, torch.Tensor]:
        """Tensors of the original layout that the adapter does not own but can regenerate (schedule buffers)."""
        return {}

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False) -> LoadReport:
        """Load an original-layout checkpoint, this adapter's own state dict, or (where supported) a diffusers
        folder. With ``strict`` anything but documented ignorable keys raises ``CheckpointError`` naming them,
        before any weight is changed."""
        name = str(source) if isinstance(source, (str, Path)) else "state dict"
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            return self.load_diffusers_folder(source, strict=strict)
        state = read_state_dict(source, trusted=trusted) if isinstance(source, (str, Path)) else dict(source)
        expected = {k: v.shape for k, v in self.state_dict().items()}
        own = _strip_lightning_prefix(state, expected)
        if own is not None:
            report = compare(expected, own, {})
            report.unexpected = [k for k in own if k not in expected]
            converted = {k: v for k, v in own.items() if k in expected and v.shape == expected[k]}
        else:
            converted, report = convert_to_model(self.original_rules(), state, expected, self.ignorable_keys)
        if strict and not report.ok:
            raise CheckpointError(f"{name} does not fit {self.name or type(self).__name__}: {report.summary()}")
        self._assign(converted)
        return report

    def load_diffusers_folder(self, folder, strict: bool = True) -> LoadReport:
        raise CheckpointError(f"{folder}: {type(self).__name__} loads checkpoint files, not diffusers folders")

    def _assign(self, converted: dict[str, torch.Tensor]) -> None:
        on_meta = any(p.is_meta for p in self.parameters())
        self.load_state_dict(converted, strict=False, assign=on_meta)

    def export_checkpoint(self) -> dict[str, torch.Tensor]:
        """The weights in the original checkpoint layout (a state dict the original code can load)."""
        state = convert_to_original(self.original_rules(), self.state_dict())
        return {**state, **self.original_extras()}


def _strip_lightning_prefix(state: dict, expected: dict) -> dict | None:
    """``state`` in this adapter's own key names (possibly under a LightningModule attribute prefix), else None."""
    for prefix in ("", "model.", "adapter."):
        keys = [k[len(prefix):] for k in state if k.startswith(prefix)]
        if keys and sum(k in expected for k in keys) > len(state) // 2:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return None
