"""Training of the paper's custom try-on model (docs/method.md §6) as a LightningModule.

One step: VAE latents of the person image (frozen VAE, the adapter's latent scale), a timestep drawn uniformly from the
1,000 training steps of the LDM schedule (scaled-linear betas 0.00085-0.012), MSE between the predicted and the true
noise. With probability ``p_uncond`` the whole batch (drawn once per batch, not per sample) is conditioned on the
learnable unconditional context instead of the garment tokens. On conditional batches the attention losses
(CWG, TV, DCML: ``i2am.losses.attention_losses``) act on decoder cross-attention layer ``loss_layer`` ("layer 2"):
its head-averaged G2R probabilities are recomputed with gradients from the q and k of the forward pass, because the
fused attention kernel does not return them. The attention entropy and maximum probability of that layer are logged
also when the losses are off (without gradient), so a collapse of the attention is visible in every run.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from i2am.adapters._unet_base import query_grid
from i2am.data import schema
from i2am.engine.hooks import Hooks
from i2am.engine.scores import split_heads
from i2am.losses import (
    attention_diagnostics,
    attention_losses,
    correspondence_ce_loss,
    correspondence_targets,
    head_average,
    query_mask,
)
from i2am.sampling.sampler import make_scheduler

PAPER_OPTIMIZER = partial(torch.optim.AdamW, lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-2)
PAPER_TERMS = ("cwg", "tv", "dcml", "entropy_floor")
DIAGNOSTICS = ("attention_entropy", "attention_max_prob")
REQUIRED_METHODS = ("prepare", "encode_images", "training_eps", "decoder_layer_name", "attribution_layers")


def attention_probabilities(layer: Attention, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ · scale) over the keys, per head, in float32: q [B, Lq, h·d], k [B, Lk, h·d] -> [B, h, Lq, Lk].

    The same probabilities the layer's own processor uses (its heads, scale and optional q/k norms).
    """
    q, k = split_heads(layer, q, k)
    return torch.softmax(torch.matmul(q.float(), k.float().transpose(-1, -2)) * layer.scale, dim=-1)


class LossLayerProbe:
    """Keeps the q and k of one cross-attention layer's call while armed; ``attention()`` turns them into the
    head-averaged G2R map [B, Lq, hr, wr], differentiable with respect to the model.

    Forward hooks on the layer's ``to_q`` / ``to_k`` (as ``AttributionCapture`` uses them): the layer keeps its fused
    processor, so its output is unchanged and only the one [B, heads, Lq, Lk] softmax is recomputed.
    """

    def __init__(self, layer: Attention, ref_grid: tuple[int, int], name: str = "loss layer"):
        self.layer, self.ref_grid, self.name = layer, (int(ref_grid[0]), int(ref_grid[1])), name
        self._stash: dict[str, torch.Tensor] = {}

    @contextmanager
    def armed(self, active: bool = True) -> Iterator[LossLayerProbe]:
        if not active:
            yield self
            return
        self._stash.clear()
        with Hooks(type(self).__name__) as hooks:
            hooks.hook(self.layer.to_q, self._keep("q"))
            hooks.hook(self.layer.to_k, self._keep("k"))
            yield self

    def _keep(self, key: str):
        def hook(module, inputs, output):
            self._stash[key] = output
        return hook

    def attention(self) -> torch.Tensor:
        """Head-averaged probabilities of the latest armed call (consumed: a second call raises)."""
        if "q" not in self._stash or "k" not in self._stash:
            raise RuntimeError(f"{self.name} was not called while the probe was armed; is it part of the forward?")
        q, k = self._stash.pop("q"), self._stash.pop("k")
        return head_average(attention_probabilities(self.layer, q, k), self.ref_grid)


class TryOnTraining(L.LightningModule):
    """Trains a custom try-on adapter (``create_model("custom")`` / ``"custom-tiny"``).

    model: the adapter; its VAE and reference encoder are frozen (requires_grad False), every other parameter
        (UNet, projector, unconditional context) is trained.
    optimizer: a factory ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); default AdamW as in the paper
        (lr 1e-5, betas (0.9, 0.999), weight decay 1e-2).
    p_uncond: probability that a batch is trained on the unconditional context (CFG dropout), drawn once per batch.
    loss_layer: decoder cross-attention layer k (1-based) the attention losses and diagnostics read; 2 in the paper.
    paper_losses: keyword arguments of ``i2am.losses.attention_losses`` (weights, sigma, guards), or None for MSE only.
    correspondence_weight: > 0 adds the toy-only ``correspondence_ce_loss`` (needs the batch's ``correspondence``).
    diagnostics_every: with the losses off, the entropy / max probability are computed every N conditional steps.
    snr_gamma: None for the plain MSE; a number γ weights each sample's noise MSE by min(SNR(t), γ) / SNR(t)
        (Min-SNR-γ, Hang et al. 2023; γ = 5 there), which speeds up convergence; the logged "mse" is then weighted.
    """

    def __init__(self, model: nn.Module, optimizer: Callable | None = None, p_uncond: float = 0.2,
                 loss_layer: int = 2, paper_losses: dict | None = None, correspondence_weight: float = 0.0,
                 diagnostics_every: int = 1, snr_gamma: float | None = None):
        super().__init__()
        missing = [m for m in REQUIRED_METHODS if not hasattr(model, m)]
        if missing:
            raise TypeError(f"TryOnTraining trains the custom try-on model; {getattr(model, 'name', type(model))} "
                            f"lacks {missing}")
        if not 0.0 <= p_uncond <= 1.0 or diagnostics_every < 1:
            raise ValueError(f"p_uncond={p_uncond} must be in [0, 1] and diagnostics_every={diagnostics_every} >= 1")
        self.model = model
        self.optimizer_factory = optimizer or PAPER_OPTIMIZER
        self.p_uncond = float(p_uncond)
        self.paper_losses = None if paper_losses is None else dict(paper_losses)
        self.correspondence_weight = float(correspondence_weight)
        self.diagnostics_every = int(diagnostics_every)
        if snr_gamma is not None and snr_gamma <= 0:
            raise ValueError(f"snr_gamma={snr_gamma} must be > 0 (or None for the plain MSE)")
        self.snr_gamma = None if snr_gamma is None else float(snr_gamma)
        self.loss_layer_name = model.decoder_layer_name(loss_layer)
        layer = {s.name: s.module for s in model.attribution_layers()}[self.loss_layer_name]
        self.probe = LossLayerProbe(layer, model.reference_grid(), self.loss_layer_name)
        self.noise_schedule = make_scheduler("DDPMScheduler")   # the LDM training schedule, 1,000 steps
        self.logged_names = self._logged_names()
        self.latest: dict[str, torch.Tensor] = {}                # last computed value of every logged name
        self.train()   # Lightning keeps the mode it finds, and the adapter is built in eval mode

    @property
    def attention_losses_on(self) -> bool:
        return self.paper_losses is not None or self.correspondence_weight > 0

    def _logged_names(self) -> tuple[str, ...]:
        names = ["loss", "mse", "unconditional"]
        names += list(PAPER_TERMS) if self.paper_losses is not None else []
        names += ["correspondence_ce"] if self.correspondence_weight > 0 else []
        return tuple(names + list(DIAGNOSTICS))

    # ---- the step ----------------------------------------------------------------------------------------------
    def compute_losses(self, batch: dict, step: int, unconditional: bool | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one batch: "loss" (the differentiable total), "mse", "unconditional" (0/1) and, on
        conditional batches where the attention is read, the attention terms and the diagnostics.

        step: the global step (CWG warm-up, diagnostics period); unconditional: None draws the CFG dropout.
        """
        model = self.model
        if unconditional is None:
            unconditional = bool(torch.rand(()) < self.p_uncond)
        with torch.no_grad():
            latents = model.encode_images(batch[schema.IMAGE])
        inputs = model.prepare(batch)
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise_schedule.config.num_train_timesteps, (latents.shape[0],),
                          device=latents.device)
        noisy = self.noise_schedule.add_noise(latents, noise, t)
        read_attention = not unconditional and (self.attention_losses_on or step % self.diagnostics_every == 0)
        with self.probe.armed(read_attention):
            eps = model.training_eps(noisy, t, inputs, unconditional=unconditional)
        mse = self.noise_loss(eps, noise, t)
        terms = {"mse": mse, "unconditional": mse.new_tensor(float(unconditional))}
        total = mse
        if read_attention:
            attention = self.probe.attention()
            if not self.attention_losses_on:
                attention = attention.detach()
            grid = query_grid(tuple(latents.shape[-2:]), model.layer_level(self.loss_layer_name))
            attention_terms = self.attention_terms(attention, batch, grid, step)
            total = total + attention_terms.pop("total")
            terms |= attention_terms
        terms["loss"] = total
        return terms

    def noise_loss(self, eps: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """MSE of the predicted noise, per sample weighted by min(SNR, γ) / SNR when ``snr_gamma`` is set."""
        if self.snr_gamma is None:
            return F.mse_loss(eps.float(), noise.float())
        alphas = self.noise_schedule.alphas_cumprod.to(t.device)[t].float()
        snr = alphas / (1 - alphas)
        weights = torch.clamp(snr, max=self.snr_gamma) / snr
        return ((eps.float() - noise.float()).pow(2).mean(dim=tuple(range(1, eps.dim()))) * weights).mean()

    def attention_terms(self, attention: torch.Tensor, batch: dict, grid: tuple[int, int], step: int
                        ) -> dict[str, torch.Tensor]:
        """The configured attention losses ("total": their sum) and the diagnostics of the loss layer's map."""
        warped = batch.get(schema.GT_WARPED_MASK)
        if self.paper_losses is not None:
            if warped is None:
                raise KeyError(f"the attention losses need batch[{schema.GT_WARPED_MASK!r}]: add it to data.extras")
            out = attention_losses(attention, warped, grid, **self.paper_losses, step=step)
        else:  # diagnostics only: over the warped-garment queries, or all queries when the data has no such mask
            mask = query_mask(warped, grid) if warped is not None else attention.new_ones(
                attention.shape[:2], dtype=torch.bool)
            out = {"total": attention.new_zeros(())} | attention_diagnostics(attention, mask)
        if self.correspondence_weight > 0:
            correspondence = batch.get(schema.CORRESPONDENCE)
            if correspondence is None:
                raise KeyError(f"attention_loss=correspondence needs batch[{schema.CORRESPONDENCE!r}] (toy world "
                               "only): add it to data.extras")
            targets, valid = correspondence_targets(correspondence, tuple(batch[schema.REFERENCE].shape[-2:]), grid,
                                                    self.probe.ref_grid)
            out["correspondence_ce"] = correspondence_ce_loss(attention, targets, valid, self.correspondence_weight)
            out["total"] = out["total"] + out["correspondence_ce"]
        return out

    def on_fit_start(self) -> None:
        # seed_everything gives every DDP rank the same seed; offset it so the ranks draw different t, noise and
        # CFG dropout (one process is unchanged)
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.global_rank)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self.compute_losses(batch, self.global_step)
        # The same names every step (NaN where a term was not computed), so the CSV header never changes.
        nan = torch.full((), math.nan, device=terms["loss"].device)
        values = {name: terms[name].detach().float() if name in terms else nan for name in self.logged_names}
        size = batch[schema.IMAGE].shape[0]
        self.log_dict({f"train/{k}": v for k, v in values.items() if k != "loss"}, on_step=True, on_epoch=False,
                      batch_size=size)
        self.log("train/loss", values["loss"], prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        self.latest |= {name: value for name, value in values.items() if name in terms}
        return terms["loss"]

    def final_metrics(self) -> dict[str, float]:
        """The latest computed value of every logged name (a term not computed at the last step keeps its value
        from the last step that computed it)."""
        return {name: value.item() for name, value in self.latest.items()}

    # ---- parameters --------------------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def configure_optimizers(self):
        return self.optimizer_factory(self.trainable_parameters())

    def train(self, mode: bool = True) -> TryOnTraining:
        """Frozen parts (VAE, reference encoder: no trainable parameter) stay in eval mode."""
        super().train(mode)
        for child in self.model.children():
            if not any(p.requires_grad for p in child.parameters()):
                child.eval()
        return self
