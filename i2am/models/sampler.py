"""One sampling loop for every adapter: DDIM (equal to the LDM DDIM sampler) or any diffusers scheduler.

Per-step callback in the k-diffusion style: ``callback({"step", "t", "x", "eps", "denoised", "x_next", "alpha_cumprod"})``.
Noise is drawn per sample from a generator seeded by ``sample_seed(seed, sample_id)``, so a sample's result does
not depend on which other samples share its batch, or on their order.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import diffusers
import torch

# The LDM schedule (``linear`` in LDM = scaled-linear betas) and its DDIM discretisation ``uniform``:
# timesteps 981, 961, ..., 1 for 50 steps; the last step goes to alphas_cumprod[0] (set_alpha_to_one=False).
LDM_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    prediction_type="epsilon", steps_offset=1, timestep_spacing="leading")
LDM_DDIM = dict(LDM_SCHEDULE, clip_sample=False, set_alpha_to_one=False)
SCHEDULER_ALIASES = {"ddim": ("DDIMScheduler", LDM_DDIM), "unipc": ("UniPCMultistepScheduler", LDM_SCHEDULE)}
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

    scheduler: "ddim" (LDM DDIM), "unipc", or a diffusers scheduler class name; scheduler_config overrides its
        config. scheduler / num_steps / guidance / eta / start_code: None = the adapter's ``sampler_defaults``. eta: DDIM eta (ignored by other schedulers).
    start_code: "noise" (x_T = noise) or "q_sample" (x_T = q_sample(z, 999), z = latent of inputs.start_image).
    seed: global seed; sample i uses ``sample_seed(seed, sample_ids[i])``.
    """

    def __init__(self, scheduler: str | None = None, num_steps: int | None = None, guidance: float | None = None,
                 eta: float | None = None, start_code: str | None = None, seed: int = 0,
                 scheduler_config: dict | None = None):
        if start_code is not None and start_code not in START_CODES:
            raise ValueError(f"Sampler.start_code={start_code!r}; choose from {START_CODES}")
        self.scheduler = scheduler
        self.num_steps = num_steps
        self.guidance = guidance
        self.eta = eta
        self.start_code = start_code
        self.seed = seed
        self.scheduler_config = dict(scheduler_config or {})

    def settings(self, model) -> dict:
        """This sampler's settings with the adapter's defaults filled in."""
        defaults = getattr(model, "sampler_defaults", {})
        pick = lambda key, value, fallback: value if value is not None else defaults.get(key, fallback)
        return dict(scheduler=pick("scheduler", self.scheduler, "ddim"), num_steps=pick("num_steps", self.num_steps, 50), guidance=pick("guidance", self.guidance, None),
                    eta=pick("eta", self.eta, 0.0), start_code=pick("start_code", self.start_code, "noise"))

    def noise(self, generators, shape, device, dtype) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)

    @torch.no_grad()
    def __call__(self, model, inputs, callback: Callable | None = None) -> torch.Tensor:
        s = self.settings(model)
        scheduler = make_scheduler(s["scheduler"], **self.scheduler_config)
        scheduler.set_timesteps(s["num_steps"])
        device, dtype = model.device, model.dtype
        generators = [torch.Generator().manual_seed(sample_seed(self.seed, sid)) for sid in inputs.sample_ids]
        x = self.noise(generators, inputs.latent_shape, device, dtype)
        if s["start_code"] == "q_sample":
            if inputs.start_image is None:
                raise ValueError("start_code='q_sample' needs inputs.start_image (the image to noise)")
            z = model.encode_images(inputs.start_image)
            x = scheduler.add_noise(z, x, torch.tensor([scheduler.config.num_train_timesteps - 1]))
        else:
            x = x * scheduler.init_noise_sigma
        alphas_cumprod = scheduler.alphas_cumprod.to(device)
        is_ddim = isinstance(scheduler, diffusers.DDIMScheduler)
        for i, t in enumerate(scheduler.timesteps):
            eps = model.denoise(scheduler.scale_model_input(x, t), t.to(device), inputs, guidance=s["guidance"])
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
