"""The custom try-on model's own DDIM sampler (``v2/ddim.py`` of the authors' code), reproduced step for step.

- Schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)² in float32 (``custom_alphas_cumprod``).
- Timesteps (``scheduling = 'uniform'``, stride τ = 1000 // num_steps, τ = 20 for 50 steps): the list
  ``range(0, 1000, τ) + [999]`` walked backwards in pairs: the model is called at t = 999, 980, 960, ..., τ and each
  step moves to ᾱ of the previous entry (980, 960, ..., 0): x ← sqrt(ᾱ_prev) x0 + sqrt(1 - ᾱ_prev) ε (η = 0).
- Return value: the **last step's predicted x0**, not the final x.
- Paste (the original's ``x_0`` argument, which ``test_model.py`` passes): before every model call the known latent
  is re-noised to the current t with fresh noise and pasted outside the generation mask,
  x ← q_sample(z, t) (1 - m) + m x. Here the noise comes from each sample's own generator (per-sample seeding).
- CFG: the adapter's [cond, uncond] batch, ε = ε_u + g (ε_c - ε_u).
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from i2am.sampling.plan import guidance_at
from i2am.sampling.schedule import (
    NUM_TRAIN_TIMESTEPS,
    custom_alphas_cumprod,
    per_sample_noise,
    predicted_x0,
    q_sample,
    timestep,
)


def custom_ddim_pairs(num_steps: int, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[tuple[int, int]]:
    """(t, t_prev) of every step in sampling order: t is where the model is called, t_prev whose ᾱ the step
    moves to. 50 steps: (999, 980), (980, 960), ..., (20, 0)."""
    if not 0 < num_steps <= num_train:
        raise ValueError(f"custom DDIM num_steps={num_steps}: needs 1 <= num_steps <= {num_train}")
    process = list(range(0, num_train, num_train // num_steps)) + [num_train - 1]
    return list(zip(reversed(process[1:]), reversed(process[:-1])))


@torch.no_grad()
def sample_custom_ddim(model, inputs, x: torch.Tensor, num_steps: int, guidance, generators,
                       known: torch.Tensor | None = None, mask: torch.Tensor | None = None, callback=None,
                       progress: bool = False) -> torch.Tensor:
    """Run the custom DDIM from ``x``; returns the last step's predicted x0.

    known / mask: the latent pasted outside the generation region and that region (1 = generate, latent grid);
    both None = no paste (the original called without ``x_0``).
    """
    if (known is None) != (mask is None):
        raise ValueError("custom DDIM paste needs both the known latent and the generation mask")
    acp = custom_alphas_cumprod().to(x.device)
    x0 = x
    for i, (t, t_prev) in enumerate(tqdm(custom_ddim_pairs(num_steps), desc="custom DDIM", disable=not progress)):
        if known is not None:
            noisy_known = q_sample(known, t, per_sample_noise(generators, x.shape[1:], x), acp)
            x = noisy_known * (1 - mask) + mask * x
        eps = model.denoise(x, timestep(t, x), inputs, guidance=guidance_at(guidance, i))
        a_t, a_prev = acp[t].to(x.dtype), acp[t_prev].to(x.dtype)
        x0 = predicted_x0(x, eps, a_t)
        x_next = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        if callback is not None:
            callback({"step": i, "t": t, "t_prev": t_prev, "x": x, "eps": eps, "denoised": x0, "x_next": x_next,
                      "alpha_cumprod": a_t})
        x = x_next
    return x0
