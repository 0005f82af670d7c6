"""One sampling entry point for every adapter: DDIM (equal to the LDM DDIM sampler), any diffusers scheduler, LDM's
PLMS (``"plms"``) or the custom model's own DDIM (``"custom_ddim"``; both in ``samplers/``). docs/sampling.md lists
each model's release / paper / default settings.

Per-step callback in the k-diffusion style: ``callback({"step", "t", "x", "eps", "denoised", "x_next",
"alpha_cumprod"})``. Noise is drawn per sample from a generator seeded by ``sample_seed(seed, sample_id)``, so a
sample's result does not depend on which other samples share its batch, or on their order.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import diffusers
import torch

from i2am.sampling.plan import guidance_at
from i2am.sampling.schedule import BETA_END, BETA_START, NUM_TRAIN_TIMESTEPS

# The LDM schedule (``linear`` in LDM = scaled-linear betas) and its DDIM discretisation ``uniform``:
# timesteps 981, 961, ..., 1 for 50 steps; the last step goes to alphas_cumprod[0] (set_alpha_to_one=False).
LDM_SCHEDULE = dict(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START, beta_end=BETA_END,
                    beta_schedule="scaled_linear", prediction_type="epsilon", steps_offset=1,
                    timestep_spacing="leading")
LDM_DDIM = dict(LDM_SCHEDULE, clip_sample=False, set_alpha_to_one=False)
SCHEDULER_ALIASES = {"ddim": ("DDIMScheduler", LDM_DDIM), "unipc": ("UniPCMultistepScheduler", LDM_SCHEDULE)}
OWN_SAMPLERS = ("plms", "custom_ddim")   # loops of the original code (samplers/), not diffusers schedulers
START_CODES = ("noise", "q_sample")


def sample_seed(seed: int, sample_id: str) -> int:
    """A 63-bit seed from (global seed, sample id), stable across runs, machines and Python versions."""
    digest = hashlib.sha256(f"{int(seed)}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def make_scheduler(name: str = "ddim", **config):
    """``"ddim"``, ``"unipc"`` or any diffusers scheduler class name, on the LDM training schedule."""
    class_name, base = SCHEDULER_ALIASES.get(name, (name, LDM_SCHEDULE))
    cls = getattr(diffusers, class_name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise ValueError(f"unknown scheduler {name!r}: use 'ddim', 'unipc' or a diffusers scheduler class name")
    return cls.from_config({**base, **config})


class Sampler:
    """Samples latents from an adapter and its prepared inputs.

    scheduler: "ddim" (LDM DDIM), "unipc", "plms" (LDM PLMS), "custom_ddim" (the custom model's DDIM) or a diffusers
        scheduler class name; scheduler_config overrides a diffusers scheduler's config.
        scheduler / num_steps / guidance / eta / start_code / paste: None = the adapter's ``sampler_defaults``.
    guidance: one number, or one value per step (guidance that changes mid-run; ``i2am.sampling.plan``).
    eta: DDIM eta (ignored by other diffusers schedulers; PLMS and the custom DDIM need 0).
    start_code: "noise" (x_T = noise) or "q_sample" (x_T = q_sample(z, 999), z = latent of inputs.start_image).
    strength: with "q_sample", the part of the schedule that runs (img2img, diffusers' ``strength``): the sampler
        runs ``num_steps`` steps, the last ones of a schedule of ``ceil(num_steps / strength)`` steps, starting
        from q_sample(z, first of them); diffusers' ``num_inference_steps`` is that schedule length. 1 = the whole
        schedule (the default).
    paste: custom DDIM only: re-noise the latent of inputs.start_image to each t and paste it outside
        inputs.paste_mask before every call (the original's ``x_0`` argument).
    seed: global seed; sample i uses ``sample_seed(seed, sample_ids[i])``.
    progress: a progress bar over the steps (PLMS, custom DDIM).
    """

    def __init__(self, scheduler: str | None = None, num_steps: int | None = None,
                 guidance: float | list[float | None] | None = None,
                 eta: float | None = None, start_code: str | None = None, seed: int = 0,
                 scheduler_config: dict | None = None, paste: bool | None = None, progress: bool = False,
                 strength: float | None = None):
        if strength is not None and not 0.0 < float(strength) <= 1.0:
            raise ValueError(f"Sampler.strength={strength}: choose a value in (0, 1]")
        if start_code is not None and start_code not in START_CODES:
            raise ValueError(f"Sampler.start_code={start_code!r}; choose from {START_CODES}")
        self.scheduler = scheduler
        self.num_steps = num_steps
        self.guidance = list(guidance) if isinstance(guidance, (list, tuple)) else guidance
        self.eta = eta
        self.start_code = start_code
        self.seed = seed
        self.scheduler_config = dict(scheduler_config or {})
        self.paste = paste
        self.progress = progress
        self.strength = strength

    def settings(self, model) -> dict:
        """This sampler's settings with the adapter's defaults filled in."""
        defaults = model.sampler_defaults
        pick = lambda key, value, fallback: value if value is not None else defaults.get(key, fallback)
        scheduler = pick("scheduler", self.scheduler, "ddim")
        # a model's default paste belongs to its custom DDIM; an explicit paste=True elsewhere is an error (__call__)
        paste = self.paste if self.paste is not None else bool(defaults.get("paste")) and scheduler == "custom_ddim"
        return dict(scheduler=scheduler, num_steps=pick("num_steps", self.num_steps, 50),
                    guidance=pick("guidance", self.guidance, None), eta=pick("eta", self.eta, 0.0),
                    start_code=pick("start_code", self.start_code, "noise"), paste=paste,
                    strength=float(pick("strength", getattr(self, "strength", None), 1.0)))

    def noise(self, generators, shape, device, dtype) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)

    def start_latent(self, model, inputs) -> torch.Tensor:
        """The latent whose q_sample a start code noises, and that the custom DDIM pastes."""
        if inputs.start_image is None:
            raise ValueError("start_code='q_sample' and paste need inputs.start_image (the image to encode)")
        if model.latent_encoding == "sample":
            return model.encode_images(inputs.start_image, sample_ids=inputs.sample_ids, role="start")
        return model.encode_images(inputs.start_image)

    @torch.no_grad()
    def __call__(self, model, inputs, callback: Callable | None = None) -> torch.Tensor:
        s = self.settings(model)
        if s["scheduler"] in OWN_SAMPLERS:
            return self._run_own_sampler(model, inputs, s, callback)
        if s["paste"]:
            raise ValueError(f"Sampler.paste=True is the custom DDIM's option, not {s['scheduler']!r}'s")
        scheduler = make_scheduler(s["scheduler"], **self.scheduler_config)
        timesteps = self._timesteps(scheduler, s)
        device, dtype = model.device, model.dtype
        generators = [torch.Generator().manual_seed(sample_seed(self.seed, sid)) for sid in inputs.sample_ids]
        x = self.noise(generators, inputs.latent_shape, device, dtype)
        if s["start_code"] == "q_sample":
            z = self.start_latent(model, inputs)
            start = timesteps[:1] if s["strength"] < 1 else torch.tensor([scheduler.config.num_train_timesteps - 1])
            x = scheduler.add_noise(z, x, start)
        else:
            x = x * scheduler.init_noise_sigma
        alphas_cumprod = scheduler.alphas_cumprod.to(device)
        is_ddim = isinstance(scheduler, diffusers.DDIMScheduler)
        for i, t in enumerate(timesteps):
            eps = model.denoise(scheduler.scale_model_input(x, t), t.to(device), inputs,
                                guidance=guidance_at(s["guidance"], i))
            step_kwargs = {}
            if is_ddim and s["eta"] > 0:
                step_kwargs = dict(eta=s["eta"], variance_noise=self.noise(generators, inputs.latent_shape,
                                                                           device, dtype))
            x_next = scheduler.step(eps, t, x, **step_kwargs).prev_sample
            if callback is not None:
                a = alphas_cumprod[t].to(dtype)
                callback({"step": i, "t": int(t), "x": x, "eps": eps, "x_next": x_next, "alpha_cumprod": a,
                          "denoised": (x - (1 - a).sqrt() * eps) / a.sqrt()})
            x = x_next
        return x

    @staticmethod
    def _timesteps(scheduler, s: dict) -> torch.Tensor:
        """The timesteps the loop visits: the whole schedule, or with ``strength`` < 1 its last ``num_steps``."""
        steps, strength = s["num_steps"], s["strength"]
        if strength >= 1:
            scheduler.set_timesteps(steps)
            return scheduler.timesteps
        if s["start_code"] != "q_sample":
            raise ValueError(f"Sampler.strength={strength} needs start_code='q_sample' (noise the start image to the "
                             f"first timestep), not {s['start_code']!r}")
        total = math.ceil(steps / strength - 1e-9)
        scheduler.set_timesteps(total)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(total - steps)
        return scheduler.timesteps[total - steps:]

    def _run_own_sampler(self, model, inputs, s: dict, callback) -> torch.Tensor:
        from i2am.sampling.custom_ddim import custom_ddim_pairs, sample_custom_ddim
        from i2am.sampling.plms import plms_timesteps, sample_plms
        from i2am.sampling.schedule import NUM_TRAIN_TIMESTEPS, custom_alphas_cumprod, ldm_alphas_cumprod, q_sample

        visited = len(plms_timesteps(s["num_steps"]) if s["scheduler"] == "plms" else custom_ddim_pairs(s["num_steps"]))
        if visited != s["num_steps"]:   # the originals' stride 1000 // S visits more than S timesteps then
            raise ValueError(f"{s['scheduler']} with num_steps={s['num_steps']} visits {visited} timesteps (stride "
                             f"1000 // {s['num_steps']}); choose a step count that divides 1000 (e.g. 50, 100)")
        if s["strength"] < 1:
            raise ValueError(f"Sampler.strength={s['strength']}: {s['scheduler']} runs the whole schedule; use a "
                             f"diffusers scheduler (e.g. 'ddim') for a partial one")
        if s["eta"]:
            raise ValueError(f"Sampler.eta={s['eta']}: {s['scheduler']} samples with eta = 0 only (as the original)")
        if s["paste"] and s["scheduler"] != "custom_ddim":
            raise ValueError(f"Sampler.paste=True is the custom DDIM's option, not {s['scheduler']!r}'s")
        device, dtype = model.device, model.dtype
        generators = [torch.Generator().manual_seed(sample_seed(self.seed, sid)) for sid in inputs.sample_ids]
        x = self.noise(generators, inputs.latent_shape, device, dtype)
        z = self.start_latent(model, inputs) if s["start_code"] == "q_sample" or s["paste"] else None
        if s["start_code"] == "q_sample":
            acp = custom_alphas_cumprod() if s["scheduler"] == "custom_ddim" else ldm_alphas_cumprod()
            x = q_sample(z, NUM_TRAIN_TIMESTEPS - 1, x, acp)
        if s["scheduler"] == "plms":
            return sample_plms(model, inputs, x, s["num_steps"], s["guidance"], callback=callback,
                               progress=self.progress)
        mask = None
        if s["paste"]:
            if inputs.paste_mask is None:
                raise ValueError("Sampler.paste=True needs inputs.paste_mask (the generation region, 1 = generate)")
            mask = inputs.paste_mask.to(device, dtype)
        return sample_custom_ddim(model, inputs, x, s["num_steps"], s["guidance"], generators,
                                  known=z if s["paste"] else None, mask=mask, callback=callback,
                                  progress=self.progress)
