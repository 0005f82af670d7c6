"""A tiny FLUX.1 Kontext-style transformer on the toy world: the garment is the reference image, the person the target.

The network is diffusers' ``FluxTransformer2DModel`` built from config (2 double-stream + 1 single-stream blocks,
4 heads x 16), fed exactly as ``FluxKontextPipeline`` packs an edit: the generated latents' 2x2 patches first, the
reference latents' patches after them, ``img_ids[..., 0]`` = 0 for the generated tokens and 1 for the reference,
rows and columns as the pipeline's latent ids. The latents are the 4x4 block means of the ``custom-toy`` preset's VAE
(``tiny-f4``: 32x24 latents of 128x96 images), so each image is 16x12 tokens.

Toy conditioning (as the UNet control's, docs/toy_world.md): every token carries extra channels next to its latent
patch. A generated token: the agnostic person's latent patch, fixed 2D Fourier features of its DensePose-like
canonical garment coordinates (u, v) and the body share of its patch. A reference token: zeros in the agnostic slot,
Fourier features of its own cell centre in the same canonical coordinates and the garment share of its patch. The
text stream is one zero token (no prompt).

Training (``i2am.training.toy_kontext_train``): FLUX's rectified flow, x_s = (1 - s) x0 + s noise, the transformer
predicting noise - x0 on the generated tokens, plus the toy-only correspondence cross-entropy of
``i2am.losses.correspondence`` on the generated x reference attention of ``LOSS_BLOCK`` (the softmax over reference
tokens of each generated query, heads averaged: the ``i2am`` normalisation), read with :class:`AttentionProbe`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Self

import torch
import torch.nn.functional as F
from diffusers import FluxKontextPipeline, FluxTransformer2DModel
from diffusers.models.transformers import transformer_flux

from i2am.adapters._components import build_vae, component_config
from i2am.data import schema
from i2am.engine.hooks import Hooks
from i2am.engine.joint import patch_backend
from i2am.losses.correspondence import correspondence_ce_loss, correspondence_targets

IMAGE_SIZE = (128, 96)
LATENT_CHANNELS = 4
PATCH = 2
TOKEN_GRID = (16, 12)                 # generated and reference grid: 32x24 latents in 2x2 patches
PATCH_DIM = LATENT_CHANNELS * PATCH * PATCH
FOURIER_FREQUENCIES = 4               # sin/cos(pi 2^k c), k < 4, per canonical coordinate
FOURIER_DIM = 2 * 2 * FOURIER_FREQUENCIES
IN_CHANNELS = 2 * PATCH_DIM + FOURIER_DIM + 2   # latent | agnostic | Fourier(u, v) | coverage | is-reference
TEXT_DIM = 16
LOSS_BLOCK = "transformer_blocks.1.attn"         # the supervised block, and the SRAM block of the check
CONFIG = {"patch_size": 1, "in_channels": IN_CHANNELS, "out_channels": PATCH_DIM, "num_layers": 2,
          "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 4, "joint_attention_dim": TEXT_DIM,
          "pooled_projection_dim": TEXT_DIM, "guidance_embeds": False, "axes_dims_rope": [4, 6, 6]}


def build_toy_kontext(seed: int = 0) -> FluxTransformer2DModel:
    """The tiny Kontext-style transformer of ``CONFIG`` with diffusers' initialisation under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FluxTransformer2DModel(**CONFIG)


def fourier_features(coords: torch.Tensor) -> torch.Tensor:
    """[..., 2] coordinates in [0, 1] -> [..., FOURIER_DIM] sin/cos(pi 2^k c) features."""
    freqs = math.pi * 2.0 ** torch.arange(FOURIER_FREQUENCIES, dtype=coords.dtype, device=coords.device)
    angles = (coords[..., None] * freqs).flatten(-2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def pack(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] latents -> [B, (H/2)(W/2), 4C] tokens, FluxKontextPipeline's 2x2 packing."""
    b, c, h, w = latents.shape
    return FluxKontextPipeline._pack_latents(latents, b, c, h, w)


def token_ids(device=None) -> torch.Tensor:
    """[2 Lg, 3] img_ids as FluxKontextPipeline builds them: (0, row, col) for the generated tokens, then
    (1, row, col) for the reference tokens."""
    gen = FluxKontextPipeline._prepare_latent_image_ids(1, *TOKEN_GRID, device, torch.float32)
    ref = gen.clone()
    ref[:, 0] = 1
    return torch.cat([gen, ref])


@dataclass
class ToyKontextPairs:
    """Toy try-on pairs encoded for the model (N pairs, Lg = Lr = 16*12 tokens), with what the check scores against.

    x0 [N, Lg, PATCH_DIM] person latent tokens (the target); condition [N, Lg, IN_CHANNELS - PATCH_DIM] the generated
    tokens' conditioning channels; reference [N, Lr, IN_CHANNELS] garment tokens; targets / valid [N, Lg] the true
    reference cell of each generated token (``correspondence_targets``); correspondence [N, 2, H, W], inpaint_mask
    [N, 1, H, W], reference_mask [N, 1, H, W] the batch fields the localisation evaluator reads.
    """

    x0: torch.Tensor
    condition: torch.Tensor
    reference: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor
    correspondence: torch.Tensor
    inpaint_mask: torch.Tensor
    reference_mask: torch.Tensor

    def __len__(self) -> int:
        return self.x0.shape[0]

    def select(self, index) -> ToyKontextPairs:
        return ToyKontextPairs(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


def _patch_share(mask: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] in {0, 1} -> [N, Lg, 1] share of each token's pixels."""
    return F.adaptive_avg_pool2d(mask.float(), TOKEN_GRID).flatten(2).transpose(1, 2)


@torch.no_grad()
def encode_pairs(batch: dict, vae=None) -> ToyKontextPairs:
    """Encode a toy VITON-HD batch (128x96, extras agnostic, densepose, correspondence) with the tiny-f4 VAE."""
    missing = [k for k in (schema.AGNOSTIC, schema.DENSEPOSE, schema.CORRESPONDENCE) if k not in batch]
    if missing:
        raise ValueError(f"encode_pairs: the batch lacks {missing}; load the toy world with extras "
                         "[agnostic, densepose, correspondence]")
    if tuple(batch[schema.IMAGE].shape[-2:]) != IMAGE_SIZE:
        raise ValueError(f"encode_pairs: images must be {IMAGE_SIZE}, got {tuple(batch[schema.IMAGE].shape[-2:])}")
    vae = vae or build_vae("tiny", component_config("vae", "tiny-f4"))

    def latent_tokens(images):
        return pack(vae.encode(images.float()).latent_dist.mean * vae.config.scaling_factor)

    densepose = (batch[schema.DENSEPOSE].float() + 1) / 2           # channels (u, v, body) in [0, 1]
    body = densepose[:, 2:3].round()
    body_share = _patch_share(body)
    uv = F.adaptive_avg_pool2d(densepose[:, :2] * body, TOKEN_GRID).flatten(2).transpose(1, 2)
    uv = (uv / body_share.clamp_min(1e-6)).flip(-1)                 # mean (v, u) of the patch's body pixels
    n = uv.shape[0]
    condition = torch.cat([latent_tokens(batch[schema.AGNOSTIC]), fourier_features(uv), body_share,
                           torch.zeros(n, uv.shape[1], 1)], dim=-1)
    hr, wr = TOKEN_GRID
    height, width = IMAGE_SIZE
    centres = torch.stack(torch.meshgrid((torch.arange(hr) + 0.5) * height / hr - 0.5,
                                         (torch.arange(wr) + 0.5) * width / wr - 0.5, indexing="ij"), -1)
    cell_uv = (centres / torch.tensor([height - 1, width - 1])).reshape(1, hr * wr, 2).expand(n, -1, -1)
    reference = torch.cat([latent_tokens(batch[schema.REFERENCE]), torch.zeros(n, hr * wr, PATCH_DIM),
                           fourier_features(cell_uv), _patch_share(batch[schema.REFERENCE_MASK]),
                           torch.ones(n, hr * wr, 1)], dim=-1)
    correspondence = batch[schema.CORRESPONDENCE].float()
    targets, valid = correspondence_targets(correspondence, IMAGE_SIZE, TOKEN_GRID, TOKEN_GRID)
    return ToyKontextPairs(latent_tokens(batch[schema.IMAGE]), condition, reference, targets, valid, correspondence,
                           batch[schema.INPAINT_MASK].float(), batch[schema.REFERENCE_MASK].float())


def velocity(model: FluxTransformer2DModel, x_s: torch.Tensor, pairs: ToyKontextPairs, s: torch.Tensor) -> torch.Tensor:
    """The model's prediction of noise - x0 on the generated tokens, for x_s [B, Lg, PATCH_DIM] at times s [B]."""
    b = x_s.shape[0]
    hidden = torch.cat([torch.cat([x_s, pairs.condition], dim=-1), pairs.reference], dim=1)
    text = hidden.new_zeros(b, 1, TEXT_DIM)
    out = model(hidden_states=hidden, encoder_hidden_states=text, pooled_projections=hidden.new_zeros(b, TEXT_DIM),
                timestep=s, img_ids=token_ids(hidden.device), txt_ids=hidden.new_zeros(1, 3), return_dict=False)[0]
    return out[:, :x_s.shape[1]]


class AttentionProbe:
    """Keeps, with gradients, the q and k the joint attention of one Flux block hands to its attention backend
    (after the q/k norms and the rotary embedding), while the context is active.

    Like ``JointAttentionCapture`` it replaces ``dispatch_attention_fn`` in diffusers' Flux module by a pass-through
    (``i2am.engine.joint.patch_backend``); forward (pre-)hooks on the block's attention module mark when that block
    is running.
    """

    def __init__(self, model: FluxTransformer2DModel, block: str = LOSS_BLOCK):
        modules = dict(model.named_modules())
        if block not in modules:
            raise ValueError(f"AttentionProbe: no module {block!r} in {type(model).__name__}")
        self.module, self.block = modules[block], block
        self.qk: tuple[torch.Tensor, torch.Tensor] | None = None
        self._inside = False
        self._hooks = Hooks(type(self).__name__)

    def __enter__(self) -> Self:
        self._hooks.activate(self._install)
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.restore()

    def _install(self, hooks: Hooks) -> None:
        patch_backend(hooks, transformer_flux, "dispatch", self._seen)
        hooks.hook(self.module, self._enter_block, pre=True)
        hooks.hook(self.module, self._leave_block)

    def _enter_block(self, *_) -> None:
        self._inside = True

    def _leave_block(self, *_) -> None:
        self._inside = False

    def _seen(self, query, key, args, kwargs, heads_first: bool):
        if self._inside:
            self.qk, self._inside = (query, key), False
        return args, kwargs

    def g2r(self) -> torch.Tensor:
        """[B, Lg, hr, wr]: each generated token's softmax over the reference tokens, heads averaged (differentiable).
        Layout [text (1), generated (Lg), reference (Lr)], as ``velocity`` packs it."""
        if self.qk is None:
            raise RuntimeError(f"AttentionProbe: {self.block} was not called inside the probe")
        q, k = (x.transpose(1, 2) for x in self.qk)              # [B, heads, L, d]
        lg = TOKEN_GRID[0] * TOKEN_GRID[1]
        logits = q[:, :, 1:1 + lg] @ k[:, :, 1 + lg:].transpose(-1, -2) * q.shape[-1] ** -0.5
        return logits.float().softmax(-1).mean(1).reshape(q.shape[0], lg, *TOKEN_GRID)


def training_losses(model: FluxTransformer2DModel, pairs: ToyKontextPairs, s: torch.Tensor, noise: torch.Tensor,
                    correspondence_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Flow-matching MSE and the correspondence cross-entropy of ``LOSS_BLOCK`` for one batch at times s [B] with
    noise [B, Lg, PATCH_DIM]; "loss" is their sum (the cross-entropy weighted)."""
    x_s = (1 - s[:, None, None]) * pairs.x0 + s[:, None, None] * noise
    with AttentionProbe(model) as probe:
        predicted = velocity(model, x_s, pairs, s)
    mse = F.mse_loss(predicted, noise - pairs.x0)
    attention = probe.g2r()
    ce = correspondence_ce_loss(attention, pairs.targets, pairs.valid, weight=1.0)
    return {"loss": mse + correspondence_weight * ce, "mse": mse, "correspondence_ce": ce}


@torch.no_grad()
def sample(model: FluxTransformer2DModel, pairs: ToyKontextPairs, num_steps: int = 8,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler integration of the flow from noise (s = 1) to s = 0 -> [N, Lg, PATCH_DIM] person latent tokens."""
    x = torch.randn(pairs.x0.shape, generator=generator)
    times = torch.linspace(1.0, 0.0, num_steps + 1)
    for s, s_next in itertools.pairwise(times):
        x = x + (s_next - s) * velocity(model, x, pairs, s.expand(x.shape[0]))
    return x
