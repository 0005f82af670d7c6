"""LDM's PLMS sampler (``ldm/models/diffusion/plms.py``; PBE, DCI-VTON and StableVITON ship it).

Timesteps: LDM's ``uniform`` DDIM discretisation, ``range(0, 1000, 1000 // S) + 1`` visited in reverse (S = 50:
981, 961, ..., 1). ε' combines the model's ε of this and earlier steps: the first step is a pseudo improved Euler
step (a second model call at the next timestep on the DDIM-predicted x, averaged with ε), then Adams-Bashforth of
order 2, 3 and 4 over the last ε's. The update is DDIM's with η = 0: x_prev = sqrt(ᾱ_prev) x0(ε') + sqrt(1 - ᾱ_prev) ε'.
The first step's extra model call is not a sampling step of its own: it runs under ``unrecorded_call``.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from i2am.sampling.plan import guidance_at
from i2am.sampling.schedule import NUM_TRAIN_TIMESTEPS, ldm_alphas_cumprod, predicted_x0, timestep, unrecorded_call

# Adams-Bashforth numerators of (ε_t, ε_{t-1}, ε_{t-2}, ε_{t-3}) and denominator, by the number of earlier ε's.
ADAMS_BASHFORTH = {1: ((3, -1), 2), 2: ((23, -16, 5), 12), 3: ((55, -59, 37, -9), 24)}


def plms_timesteps(num_steps: int, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """LDM ``make_ddim_timesteps(uniform)`` in sampling order. As in LDM, a step count that does not divide 1000
    gives ``len(range(0, 1000, 1000 // S))`` steps (e.g. S = 30 -> 31)."""
    if not 0 < num_steps <= num_train:
        raise ValueError(f"PLMS num_steps={num_steps}: needs 1 <= num_steps <= {num_train}")
    return [t + 1 for t in range(0, num_train, num_train // num_steps)][::-1]


def combine_eps(eps: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
    """ε' from this step's ε and up to three earlier ones (newest last); ``history`` must not be empty."""
    numerators, denominator = ADAMS_BASHFORTH[min(len(history), 3)]
    terms = [eps, *reversed(history[-3:])]
    return sum(n * e for n, e in zip(numerators, terms)) / denominator


def ddim_step(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor):
    """DDIM with η = 0 from ᾱ_t to ᾱ_prev: (x_prev, predicted x0)."""
    x0 = predicted_x0(x, eps, a_t)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps, x0


@torch.no_grad()
def sample_plms(model, inputs, x: torch.Tensor, num_steps: int, guidance, callback=None,
                progress: bool = False) -> torch.Tensor:
    """Run PLMS from the start latent ``x``; returns the final latent (as LDM's ``sample``)."""
    acp = ldm_alphas_cumprod().to(x.device)
    steps = plms_timesteps(num_steps)
    history: list[torch.Tensor] = []
    for i, t in enumerate(tqdm(steps, desc="PLMS", disable=not progress)):
        t_next = steps[min(i + 1, len(steps) - 1)]          # LDM: the last step's "next" timestep is itself
        t_prev = steps[i + 1] if i + 1 < len(steps) else 0    # ᾱ_prev: the next step's ᾱ, ᾱ_0 after the last
        a_t, a_prev = acp[t].to(x.dtype), acp[t_prev].to(x.dtype)

        eps = model.denoise(x, timestep(t, x), inputs, guidance=guidance_at(guidance, i))
        if history:
            eps_prime = combine_eps(eps, history)
        else:
            x_euler, _ = ddim_step(x, eps, a_t, a_prev)
            with unrecorded_call(model):
                eps_next = model.denoise(x_euler, timestep(t_next, x), inputs, guidance=guidance_at(guidance, i))
            eps_prime = (eps + eps_next) / 2
        x_next, x0 = ddim_step(x, eps_prime, a_t, a_prev)
        history = [*history[-2:], eps]
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "eps": eps, "eps_prime": eps_prime, "denoised": x0,
                      "x_next": x_next, "alpha_cumprod": a_t})
        x = x_next
    return x
