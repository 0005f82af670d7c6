"""The adapter interface every model family implements (the k-diffusion ``external.py`` idea).

An adapter owns its modules (a diffusers UNet or a module wrapping one, an ``AutoencoderKL``, a reference
encoder), turns a dataset batch into model inputs (``prepare``), runs one CFG-batched UNet call per step
(``denoise``), tells the attribution engine which layers to hook (``attribution_layers``) and converts its weights
from and to the original checkpoint layout (``load_checkpoint`` / ``export_checkpoint``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from i2am.adapters._checkpoint import CheckpointError, LoadReport, compare, read_state_dict
from i2am.adapters._convert import Rule, convert_to_model, convert_to_original
from i2am.data import schema
from i2am.engine.layers import LayerSpec, discover_cross_attention
from i2am.sampling.plan import uses_cfg

NUM_LEVELS = 4  # SD-1.x UNet: latent, 1/2, 1/4, 1/8


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


def query_grid(latent_hw: tuple[int, int], level: int) -> tuple[int, int]:
    """Grid of a UNet level: each stride-2 conv (kernel 3, padding 1) maps a size n to ceil(n / 2)."""
    h, w = latent_hw
    for _ in range(level):
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w


def forward_rank(name: str) -> int:
    """Stable sort key putting diffusers UNet modules in forward order (modules register up blocks before mid)."""
    return 0 if "down_blocks" in name else 1 if "mid_block" in name else 2


def unet_level(name: str, num_levels: int = NUM_LEVELS) -> int:
    """Resolution level of a diffusers UNet module path (0 = latent grid) in a UNet of ``num_levels`` levels."""
    if "mid_block" in name:
        return num_levels - 1
    match = re.search(r"(down|up)_blocks\.(\d+)", name)
    if match is None:
        raise ValueError(f"cannot tell the resolution level of {name!r}")
    block = int(match.group(2))
    return block if match.group(1) == "down" else num_levels - 1 - block


class DiffusionAdapter(nn.Module):
    """Base class of the model families. Subclasses set the modules and implement the ``# family`` methods."""

    cfg_order = "uncond_cond"        # batch order when CFG is on: PBE "uncond_cond", the custom model "cond_uncond"
    ignorable_keys: tuple[str, ...] = ()   # fnmatch patterns of original keys accepted and ignored by the loader
    latent_scale = 0.18215
    # False while a sampler makes a UNet call that is not a step (samplers.schedule.unrecorded_call)
    records_call = True
    own_loop = False      # True where ``run_loop`` is the adapter's own loop (the re-running checks then trust it)
    null_reference = "inputs"   # the R2G null counterfactual: a run on ``null_inputs`` (where defined, else the
                                # unconditional context), or "knockout" (every spatial reference token knocked out)

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
    def cfg_layout_for(self, guidance) -> str:
        """The batch layout of a ``denoise`` call with this guidance: ``cfg_order`` with CFG, else "none"."""
        return self.cfg_order if uses_cfg(guidance) else "none"

    @property
    def cfg_layout(self) -> str:
        """The batch layout at the adapter's default guidance."""
        return self.cfg_layout_for(self.guidance)

    def default_sram_layers(self) -> tuple[str, ...]:
        """The layers ``capture.sram_layers=auto`` keeps full SRAMs of: the middle one among the layers with spatial
        reference tokens (outside the mid block); none for single-token models. Families with a paper choice
        override this (custom model: decoder layer 2; StableVITON: warp block 4)."""
        spatial = [s.name for s in self.attribution_layers() if s.ref_grid is not None and not s.mid]
        return (spatial[len(spatial) // 2],) if spatial else ()

    @property
    def step_module(self) -> nn.Module:
        return self.unet

    def reference_grid(self):
        """``LayerSpec.ref_grid`` of the UNet cross-attention layers (None = one token)."""
        return

    def attribution_layers(self) -> list[LayerSpec]:
        """Every hookable cross-attention layer, in forward order, named by its path in ``step_module``."""
        prefix = self._unet_path()
        specs = sorted(discover_cross_attention(self.unet), key=lambda s: forward_rank(s.name))
        return [LayerSpec(name=prefix + s.name, module=s.module, ref_grid=self.reference_grid(), group="unet",
                          mid=s.mid) for s in specs]

    def _unet_path(self) -> str:
        for name, module in self.step_module.named_modules():
            if module is self.unet:
                return f"{name}." if name else ""
        raise RuntimeError("the UNet is not inside step_module")

    def layer_level(self, name: str) -> int:
        """Resolution level (0 = latent grid, k = 1/2**k) of a layer named in ``attribution_layers``."""
        unet = getattr(self, "unet", None)
        levels = len(unet.config.block_out_channels) if unet is not None else NUM_LEVELS
        return unet_level(name, levels)

    def expected_query_grids(self, latent_hw: tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """Query grid of every hookable layer, computed from the architecture (works on ``meta``)."""
        latent_hw = latent_hw or self.latent_size
        return {s.name: query_grid(latent_hw, self.layer_level(s.name)) for s in self.attribution_layers()}

    @property
    def latent_size(self) -> tuple[int, int]:
        vae = getattr(self, "vae", None)
        factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        return self.image_size[0] // factor, self.image_size[1] // factor

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

    def predict_eps(self, x: torch.Tensor, t, concat, context, extra: dict) -> torch.Tensor:
        """One call of ``step_module`` on an already CFG-batched input."""
        sample = x if concat is None else torch.cat([x, concat], dim=1)
        return self.unet(sample, t, encoder_hidden_states=context).sample

    def denoise(self, x_t: torch.Tensor, t, inputs: DenoiseInputs, guidance: float | None = None) -> torch.Tensor:
        """eps for ``x_t`` at ``t``: one UNet call; with CFG the batch is [uncond, cond] or [cond, uncond]."""
        guidance = self.guidance if guidance is None else guidance
        if not uses_cfg(guidance):
            return self.predict_eps(x_t, t, inputs.concat, inputs.context, inputs.extra)

        def twice(v):
            return None if v is None else torch.cat([v, v])

        cond_first = self.cfg_order == "cond_uncond"
        pair = (inputs.context, inputs.uncond_context) if cond_first else (inputs.uncond_context, inputs.context)
        eps = self.predict_eps(twice(x_t), t, twice(inputs.concat), torch.cat(pair),
                               {k: twice(v) for k, v in inputs.extra.items()})
        first, second = eps.chunk(2)
        eps_cond, eps_uncond = (first, second) if cond_first else (second, first)
        return eps_uncond + guidance * (eps_cond - eps_uncond)

    def run_loop(self, inputs, sampler, callback=None) -> torch.Tensor:
        """Final latents of one sampling run on prepared ``inputs`` (noise fixed by the sample ids). The
        faithfulness and randomisation checks re-run the model through this; adapters that sample with a loop of
        their own override it (and set ``own_loop``)."""
        return sampler(self, inputs, callback=callback)

    @torch.no_grad()
    def sample(self, batch: dict, sampler=None, callback=None) -> dict:
        """Generate from a dataset batch: {"images": [B, 3, H, W] in [-1, 1], "latents": [B, 4, h, w]}."""
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
