"""Model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"), docs/faithfulness.md.

Re-initialise the denoiser stage by stage, cascading from the output side (decoder blocks last to first, then the
step module's other parts such as StableVITON's warp blocks, the mid block, the encoder blocks, the input layers),
or one stage at a time (independent), and compare the R2G / G2R ULAMs of the randomised model with the original's on
the same inputs and noise: Spearman rank correlation and SSIM. Maps that came from what the model learned must lose
their similarity; the reference level is the similarity of two runs of the original model with different noise.

A stage is re-initialised with each submodule's own ``reset_parameters`` (Linear, Conv, norms) under a fixed seed,
and every parameter and buffer of the stage is restored on exit, also on an exception.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from i2am.adapters._anatomy import Stage, denoiser_stages
from i2am.engine import CaptureConfig
from i2am.engine.factory import capture_for
from i2am.evaluation.rerun import regenerate, require_sampler_loop
from i2am.measures.curves import map_ssim, spearman


def adapter_stages(adapter) -> list[Stage]:
    """The randomisation stages of an adapter, output side first: its own ``randomization_stages()`` where it has
    them (a diffusion transformer's blocks; PASD's UNet and ControlNet), else ``denoiser_stages`` of its UNet."""
    own = getattr(adapter, "randomization_stages", None)
    if own is not None:
        return own()
    return denoiser_stages(adapter.step_module, getattr(adapter, "unet", None))


def stage_tensors(modules: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the stage, keyed by (module index, name)."""
    out = {}
    for i, module in enumerate(modules):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            out[f"{i}.{name}"] = tensor
    return out


@contextmanager
def randomized(stages: Sequence[Stage], seed: int = 0):
    """Re-initialise the given stages (seeded, per stage) inside the block; restore them exactly afterwards."""
    saved = [{k: v.detach().clone() for k, v in stage_tensors(mods).items()} for _, mods in stages]
    try:
        with torch.no_grad():
            for index, (name, modules) in enumerate(stages):
                devices = sorted({str(p.device) for m in modules for p in m.parameters() if p.device.type == "cuda"})
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(int(seed) * 7919 + sum(map(ord, name)))
                    for module in modules:
                        for sub in module.modules():
                            if hasattr(sub, "reset_parameters") and any(True for _ in sub.parameters(recurse=False)):
                                sub.reset_parameters()
        yield
    finally:
        with torch.no_grad():
            for backup, (_, modules) in zip(saved, stages):
                for key, tensor in stage_tensors(modules).items():
                    tensor.copy_(backup[key])


def capture_config_from(meta: dict, directions: Sequence[str]) -> CaptureConfig:
    """The CaptureConfig that recorded a run's maps, from their metadata (SRAM layers left out)."""
    return CaptureConfig(num_steps=meta["num_steps"], time_groups=meta["time_groups"],
                         directions=[d for d in directions if d in meta["directions"]],
                         layers=[layer["name"] for layer in meta["layers"]], cfg_layout="auto",
                         r2g_grid=meta.get("r2g_grid"), g2r_grid=meta.get("g2r_grid"),
                         family_layers=meta.get("family_layers") or {})


@torch.no_grad()
def ulams(adapter, sampler, inputs, cfg: CaptureConfig, region: torch.Tensor | None = None) -> dict:
    """The R2G / G2R ULAMs ([h, w] each) of one run of the model on prepared ``inputs`` under capture."""
    with capture_for(adapter, cfg) as cap:
        if region is not None and "g2r" in cfg.directions:
            cap.set_region_mask(region.to(adapter.device))
        regenerate(adapter, sampler, inputs)
    maps = cap.maps()
    return {d: getattr(maps, d).ulam[0].float().cpu() for d in cfg.directions if getattr(maps, d).available}


def similarity(original: dict, other: dict, size: tuple[int, int] | None) -> dict[str, float]:
    out = {}
    for direction, original_map in original.items():
        out[f"{direction}_spearman"] = spearman(original_map, other[direction])
        out[f"{direction}_ssim"] = map_ssim(original_map, other[direction], size)
    return out


def randomization_curves(adapter, sampler, sample, cfg: CaptureConfig, *, stages: Sequence[Stage] | None = None,
                         modes: Sequence[str] = ("cascading", "independent"), seed: int = 0,
                         region: torch.Tensor | None = None, ssim_size: tuple[int, int] | None = None) -> dict:
    """Similarity of the randomised model's ULAMs to the original's after each stage, plus the two-noise-seed level.

    Returns ``{"stages": [...], "reference": {key: value}, "cascading": {key: [per stage]}, "independent": {...}}``
    with keys ``{r2g|g2r}_{spearman|ssim}``.
    """
    require_sampler_loop(adapter, sampler, "model-parameter randomisation")
    stages = list(stages) if stages is not None else adapter_stages(adapter)
    with torch.no_grad():   # the reference encoders and the VAE lie outside the stages: prepare once
        inputs = adapter.prepare(dict(sample))
    original = ulams(adapter, sampler, inputs, cfg, region)
    other_noise = copy.copy(sampler)
    other_noise.seed = int(getattr(sampler, "seed", 0)) + 1
    result = {"stages": [name for name, _ in stages],
              "reference": similarity(original, ulams(adapter, other_noise, inputs, cfg, region), ssim_size)}
    for mode in modes:
        if mode not in ("cascading", "independent"):
            raise ValueError(f"randomization mode {mode!r}: choose from cascading, independent")
        curves: dict[str, list[float]] = {}
        for k in range(len(stages)):
            chosen = stages[:k + 1] if mode == "cascading" else [stages[k]]
            with randomized(chosen, seed):
                values = similarity(original, ulams(adapter, sampler, inputs, cfg, region), ssim_size)
            for key, value in values.items():
                curves.setdefault(key, []).append(value)
        result[mode] = curves
    return result
