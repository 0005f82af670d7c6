"""PASD's sampling pieces: defaults of ``test_pasd.py``, the start latent built from the LR image."""
from __future__ import annotations

import torch

DEFAULT_SCHEDULER = "unipc"   # test_pasd.py at HEAD: UniPC, 20 steps, guidance 9
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 9.0
ADDED_NOISE_LEVEL = 900


# PASD builds UniPC from SD-1.5's scheduler config, which leaves UniPC's own "linspace" spacing (999, 949, ...).
SCHEDULER_OVERRIDES = {"unipc": {"timestep_spacing": "linspace"},
                       "UniPCMultistepScheduler": {"timestep_spacing": "linspace"}}


def start_latents(scheduler, lr_latents: torch.Tensor, noise: torch.Tensor, added_noise: torch.Tensor,
                  added_noise_level: int = ADDED_NOISE_LEVEL) -> torch.Tensor:
    """PASD's start latent (``pipeline_pasd.py`` ``prepare_latents``): the LR latent noised to the first timestep of
    the schedule with ``noise``, then noised again at ``added_noise_level`` with ``added_noise``, times
    ``init_noise_sigma``. ``set_timesteps`` must have run.

    Both steps call ``scheduler.add_noise`` exactly as PASD does, so they inherit its semantics: DDIM noises to any
    timestep, while the sigma-based multistep schedulers (UniPC) map a timestep absent from the schedule (900 for 20
    steps) to the schedule's last one, i.e. the second noising is then a small one.
    """
    batch = lr_latents.shape[0]
    first = scheduler.timesteps[:1].repeat(batch)
    latents = scheduler.add_noise(lr_latents, noise, first)
    latents = scheduler.add_noise(latents, added_noise, torch.full((batch,), added_noise_level, dtype=torch.long))
    return latents * scheduler.init_noise_sigma
