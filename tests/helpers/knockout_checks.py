"""Shared by the tests of the diffusion-transformer adapters: a toy batch, and the identities every joint-attention
knockout must satisfy on a pipeline adapter."""
from __future__ import annotations

import torch


def toy_batch(n=2):
    """n random 128x96 samples (image, reference, an inpaint mask over the middle), ids s0, s1, ..."""
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, 128, 96)
    mask[..., 32:96, 24:72] = 1
    return {"image": torch.rand(n, 3, 128, 96, generator=gen) * 2 - 1, "inpaint_mask": mask,
            "reference": torch.rand(n, 3, 128, 96, generator=gen) * 2 - 1, "sample_id": [f"s{i}" for i in range(n)]}


def run_without(adapter, inputs, sampler, cut):
    """The adapter's loop with ``cut(module, args, kwargs)`` applied to every transformer call (the tokens a
    knockout of everything should be equivalent to removing, cut out of the call)."""
    handle = adapter.transformer.register_forward_pre_hook(cut, with_kwargs=True)
    try:
        return adapter.run_loop(inputs, sampler)
    finally:
        handle.remove()


def assert_knockout_identities(adapter, inputs, sampler, cut, scores: torch.Tensor) -> None:
    """Removing no token is bit-identical to the plain loop; removing every token equals the loop with the tokens
    cut out (rtol 1e-5); removing half of them (by ``scores``) differs from both; the plain loop is back after."""
    batch = scores.shape[0]
    plain = adapter.run_loop(inputs, sampler)
    without = run_without(adapter, inputs, sampler, cut)
    assert not torch.allclose(without, plain)
    with adapter.token_knockout() as knockout:
        knockout.set_keep(lambda g: torch.ones(batch, g[0] * g[1], dtype=torch.bool))
        assert torch.equal(adapter.run_loop(inputs, sampler), plain)
        knockout.set_keep(lambda g: torch.zeros(batch, g[0] * g[1], dtype=torch.bool))
        torch.testing.assert_close(adapter.run_loop(inputs, sampler), without, rtol=1e-5, atol=1e-6)
        knockout.delete(scores, 0.5)
        half = adapter.run_loop(inputs, sampler)
    assert not torch.allclose(half, plain) and not torch.allclose(half, without)
    assert torch.equal(adapter.run_loop(inputs, sampler), plain)
