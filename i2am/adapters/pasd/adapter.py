"""The PASD adapter: SD-1.5 + pixel-aware cross-attention (PACA) super-resolution, hookable for I2AM.

One denoising step runs the ControlNet branch on the CFG batch [uncond (negative prompt), cond] and then the UNet
(the engine's ``step_module``), whose 12 PACA ``attn2`` layers attend from output tokens to the ControlNet residuals
on the same grid. G2R maps therefore lie on the (upsampled) LR input and R2G maps on the output, pixel-aligned.
The ControlNet sees each half's own text, so the PACA keys differ between the halves; the capture reads index 1.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from i2am.adapters._anatomy import denoiser_stages
from i2am.adapters._base import DenoiseInputs
from i2am.adapters._checkpoint import CheckpointError, LoadReport, compare, read_state_dict
from i2am.adapters._unet_base import UNetAdapter
from i2am.adapters.pasd import checkpoint as release
from i2am.adapters.pasd.color_fix import wavelet_color_fix
from i2am.adapters.pasd.controlnet import PixelAwareControlNetModel
from i2am.adapters.pasd.sampling import (
    ADDED_NOISE_LEVEL,
    DEFAULT_GUIDANCE,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    SCHEDULER_OVERRIDES,
    start_latents,
)
from i2am.adapters.pasd.text import ADDED_PROMPT, NEGATIVE_PROMPT, PromptEncoder, full_prompt
from i2am.adapters.pasd.unet import PixelAwareUNet2DConditionModel
from i2am.data import schema
from i2am.engine.layers import LayerSpec
from i2am.sampling.plan import guidance_at
from i2am.sampling.sampler import Sampler, make_scheduler, sample_seed

LR = "lr"      # batch key: the LR image at output size, [B, 3, H, W] in [0, 1]
PROMPT = "prompt"  # optional batch key: list[str], one prompt per sample (default: empty prompts)


class PASDAdapter(UNetAdapter):
    """PASD (Yang et al., ECCV 2024) behind the i2am adapter interface.

    Sampler defaults follow ``test_pasd.py`` at HEAD: UniPC, 20 steps, guidance 9; the start latent is built from
    the LR image (``start_latents``), and the wavelet colour fix is applied after decoding.
    """

    cfg_order = "uncond_cond"
    own_loop = True                # run_loop is PASD's loop (start latent from the LR image), not the sampler's
    null_reference = "knockout"    # the R2G null counterfactual: every PACA token knocked out (docs/faithfulness.md)

    def __init__(self, unet: PixelAwareUNet2DConditionModel, controlnet: PixelAwareControlNetModel, vae,
                 prompt_encoder: PromptEncoder, *, size: str = "full", image_size=(512, 512),
                 num_steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE, scheduler: str = DEFAULT_SCHEDULER,
                 scheduler_config: dict | None = None, added_noise_level: int = ADDED_NOISE_LEVEL,
                 conditioning_scale: float = 1.0, negative_prompt: str = NEGATIVE_PROMPT,
                 added_prompt: str = ADDED_PROMPT, color_fix: bool = True, variant: str = "pasd"):
        super().__init__(size, guidance, image_size, start_code="pasd", num_steps=num_steps)
        self.unet, self.controlnet, self.vae, self.prompt_encoder = unet, controlnet, vae, prompt_encoder
        self.sampler_defaults["scheduler"] = scheduler
        self.scheduler_config = {k: v for k, v in (scheduler_config or {}).items() if not k.startswith("_")}
        self.added_noise_level, self.conditioning_scale = added_noise_level, conditioning_scale
        self.negative_prompt, self.added_prompt, self.color_fix = negative_prompt, added_prompt, color_fix
        self.variant = variant
        self.latent_scale = vae.config.scaling_factor

    # ------------------------------------------------------------------ engine contract
    def attribution_layers(self) -> list[LayerSpec]:
        """The 12 PACA cross-attentions, keys on the query grid, in forward order (1/8, 1/4, 1/2, 1 of the latent)."""
        modules = dict(self.unet.named_modules())
        return [LayerSpec(name=name, module=modules[name], ref_grid="query", group="paca")
                for name in self.unet.paca_layer_names()]

    # ------------------------------------------------------------------ conditioning
    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt embeddings, negative-prompt embeddings), each [B, 77, D]; prompts get PASD's added words."""
        texts = [full_prompt(p, self.added_prompt) for p in prompts] + [self.negative_prompt] * len(prompts)
        context, uncond = self.prompt_encoder(texts).to(self.dtype).chunk(2)
        return context, uncond

    def prepare(self, batch: dict) -> DenoiseInputs:
        """``batch["lr"]``: [B, 3, H, W] in [0, 1] at output size; ``batch["prompt"]``: optional prompts."""
        lr = batch[LR].to(self.device, self.dtype)
        if tuple(lr.shape[-2:]) != self.image_size:
            raise ValueError(f"PASD: batch['lr'] is {tuple(lr.shape[-2:])} but the adapter's image_size is "
                             f"{self.image_size}; resize the LR image to the output size first")
        prompts = list(batch.get(PROMPT) or [""] * lr.shape[0])
        if len(prompts) != lr.shape[0]:
            raise ValueError(f"PASD: {len(prompts)} prompts for a batch of {lr.shape[0]}")
        context, uncond = self.encode_prompts(prompts)
        ids = [str(s) for s in batch.get(schema.SAMPLE_ID, range(lr.shape[0]))]
        return DenoiseInputs(concat=None, context=context, uncond_context=uncond, latent_shape=(4, *self.latent_size),
                             sample_ids=ids, extra={LR: lr}, start_image=lr)

    def predict_eps(self, x: torch.Tensor, t, concat, context, extra: dict) -> torch.Tensor:
        """ControlNet on (x, t, text, LR), then the UNet with its residuals (skips + PACA keys/values)."""
        down, mid = self.controlnet(x, t, encoder_hidden_states=context, controlnet_cond=extra[LR],
                                    conditioning_scale=self.conditioning_scale, return_dict=False)
        return self.unet(x, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, return_dict=False)[0]

    # ------------------------------------------------------------------ sampling
    def make_scheduler(self, name: str, overrides: dict | None = None):
        return make_scheduler(name, **{**self.scheduler_config, **SCHEDULER_OVERRIDES.get(name, {}),
                                       **(overrides or {})})

    def lr_latents(self, lr01: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """A VAE posterior sample of each LR image (as PASD), with that sample's generator."""
        posterior = self.vae.encode(lr01 * 2.0 - 1.0).latent_dist
        eps = torch.stack([torch.randn(posterior.mean.shape[1:], generator=g) for g in generators])
        return (posterior.mean + posterior.std * eps.to(posterior.mean)) * self.latent_scale

    def decode_latents(self, latents: torch.Tensor, lr01: torch.Tensor | None = None) -> torch.Tensor:
        """Latents -> [-1, 1]; with ``lr01`` and ``color_fix``, PASD's wavelet colour fix towards the LR image.

        Without ``lr01`` (how the faithfulness checks decode every run they compare) the plain VAE decode: the
        colour fix copies the LR image's low frequencies in, past the attention the checks perturb."""
        images = super().decode_latents(latents)
        if self.color_fix and lr01 is not None:
            images = wavelet_color_fix((images + 1) / 2, lr01).clamp(0, 1) * 2 - 1
        return images

    @torch.no_grad()
    def run_loop(self, inputs: DenoiseInputs, sampler: Sampler, callback=None) -> torch.Tensor:
        """PASD's own loop on prepared inputs -> final latents (not decoded).

        ``Sampler``'s scheduler, steps, guidance and per-sample seeds, with PASD's start latent instead of pure
        noise (``sampler.start_code`` is not used). Row i draws, from the generator of ``inputs.sample_ids[i]``,
        the LR posterior sample, the noise and the added noise, in that order: rows that repeat a sample id get
        that sample's own noise, whatever the batch. The callback dict is ``Sampler``'s (``alpha_cumprod``
        included). The faithfulness and randomisation checks re-run PASD through this (``own_loop``).
        """
        settings = sampler.settings(self)
        scheduler = self.make_scheduler(settings["scheduler"], sampler.scheduler_config)
        scheduler.set_timesteps(settings["num_steps"])
        generators = [torch.Generator().manual_seed(sample_seed(sampler.seed, sid)) for sid in inputs.sample_ids]
        z_lr = self.lr_latents(inputs.extra[LR], generators)
        noise = sampler.noise(generators, inputs.latent_shape, self.device, self.dtype)
        added = sampler.noise(generators, inputs.latent_shape, self.device, self.dtype)
        x = start_latents(scheduler, z_lr, noise, added, self.added_noise_level)
        alphas_cumprod = scheduler.alphas_cumprod.to(self.device)
        for i, t in enumerate(scheduler.timesteps):
            eps = self.denoise(scheduler.scale_model_input(x, t), t.to(self.device), inputs,
                               guidance=guidance_at(settings["guidance"], i))
            x_next = scheduler.step(eps, t, x).prev_sample
            if callback is not None:
                a = alphas_cumprod[t].to(x.dtype)
                callback({"step": i, "t": int(t), "x": x, "eps": eps, "x_next": x_next, "alpha_cumprod": a,
                          "denoised": (x - (1 - a).sqrt() * eps) / a.sqrt()})
            x = x_next
        return x

    @torch.no_grad()
    def sample(self, batch: dict, sampler: Sampler | None = None, callback=None) -> dict:
        """Super-resolve ``batch["lr"]``: {"images": [B, 3, H, W] in [-1, 1], "latents"}: ``run_loop``, then the
        decode with PASD's colour fix towards the LR image."""
        inputs = self.prepare(batch)
        latents = self.run_loop(inputs, sampler or Sampler(), callback=callback)
        return {"images": self.decode_latents(latents, inputs.extra[LR]), "latents": latents}

    def randomization_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """The randomisation check's stages, output side first: the UNet's (its PACA projections included), then
        the ControlNet, whose features of the LR image are the PACA layers' keys and values."""
        return [*denoiser_stages(self.unet), ("controlnet", [self.controlnet])]

    # ------------------------------------------------------------------ checkpoints
    def export_checkpoint(self) -> dict[str, torch.Tensor]:
        """The UNet and ControlNet weights in the release layout (``unet/`` and ``controlnet/`` key prefixes), the
        state dict ``load_checkpoint`` reads."""
        modules = {"unet": self.unet, "controlnet": self.controlnet}
        return {f"{folder}/{key}": value for folder, module in modules.items()
                for key, value in module.state_dict().items()}

    def load_checkpoint(self, source, strict: bool = True, trusted: bool = False) -> LoadReport:
        """Load a release folder (``unet/`` + ``controlnet/``), one file, or a state dict whose keys carry the
        ``unet/`` / ``controlnet/`` prefixes (the layout of ``pasd.json``). The variant must be the adapter's.
        With ``strict``, any missing, unexpected or mis-shaped key raises before a weight changes."""
        controlnet_config = None
        if isinstance(source, dict):
            state, name = source, "state dict"
        elif Path(source).is_dir():
            state, configs = release.read_release(source)
            controlnet_config, name = configs["controlnet"], str(source)
        else:
            state, name = read_state_dict(source, trusted=trusted), str(source)
        variant = release.detect_variant(state, controlnet_config)
        release.require_supported(variant, name)
        if variant != self.variant:
            raise CheckpointError(f"{name}: a {variant!r} checkpoint, but this adapter was built as "
                                  f"{self.variant!r}; build it with create_model('pasd', variant={variant!r})")
        parts = release.split_prefixed(state)
        modules: dict[str, nn.Module] = {"unet": self.unet, "controlnet": self.controlnet}
        report, usable = LoadReport(), {}
        for folder, module in modules.items():
            expected = {key: value.shape for key, value in module.state_dict().items()}
            incoming = parts[folder]
            part = compare(expected, incoming, {key: f"{folder}/{key}" for key in expected})
            report.missing += part.missing
            report.mismatched += part.mismatched
            report.unexpected += [f"{folder}/{key}" for key in incoming if key not in expected]
            usable[folder] = {k: v for k, v in incoming.items()
                              if k in expected and tuple(v.shape) == tuple(expected[k])}
        if strict and not report.ok:
            raise CheckpointError(f"{name}: PASD checkpoint does not fit: {report.summary()}")
        for folder, module in modules.items():
            on_meta = any(p.is_meta for p in module.parameters())
            module.load_state_dict(usable[folder], strict=False, assign=on_meta)
        return report
