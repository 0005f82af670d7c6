"""The training noise schedule shared by the original samplers, and the per-step helpers they use."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012
RECORDS_CALL = "records_call"   # adapter attribute an AttributionCapture reads: False = not a sampling step


def ldm_betas(num_train: int = NUM_TRAIN_TIMESTEPS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """LDM's ``linear`` schedule (diffusers' ``scaled_linear``): betas = linspace(sqrt(b0), sqrt(b1))²."""
    return torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, num_train, dtype=dtype) ** 2


def ldm_alphas_cumprod(num_train: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The LDM schedule accumulated in float64, stored as float32 (``register_schedule``); the custom model's sampler
    accumulates in float32 (``custom_alphas_cumprod``)."""
    return torch.cumprod(1.0 - ldm_betas(num_train), dim=0).to(torch.float32)


def custom_alphas_cumprod(num_train: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    return torch.cumprod(1.0 - ldm_betas(num_train, torch.float32), dim=0)


def per_sample_noise(generators, shape, like: torch.Tensor) -> torch.Tensor:
    """One standard-normal draw per sample from that sample's own generator (CPU), on ``like``'s device/dtype."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators]).to(like.device, like.dtype)


def q_sample(z: torch.Tensor, t: int, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """sqrt(ᾱ_t) z + sqrt(1 - ᾱ_t) noise."""
    a = alphas_cumprod[int(t)].to(z.device, z.dtype)
    return a.sqrt() * z + (1 - a).sqrt() * noise


def predicted_x0(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    return (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()


def timestep(t: int, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(int(t), device=like.device)


@contextmanager
def unrecorded_call(model) -> Iterator[None]:
    """UNet calls inside are not sampling steps of their own: a capture neither counts nor scores them."""
    previous = model.records_call
    model.records_call = False
    try:
        yield
    finally:
        model.records_call = previous
