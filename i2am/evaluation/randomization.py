"""Model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"), docs/faithfulness.md.

Re-initialise the model stage by stage, cascading from the output side (decoder blocks last to first, then the
step module's other parts such as StableVITON's warp blocks, the mid block, the encoder blocks, the input layers,
then every other learned part: the reference encoder / token projector, learned null contexts; ``complete_stages``),
or one stage at a time (independent), under several re-initialisation seeds, and compare the R2G / G2R ULAMs of the
randomised model with the original's on the same inputs and noise: Spearman with and without absolute values, SSIM
and HOG. Maps that came from what the model learned must lose their similarity; the nulls say how low is low: two
fully randomised models against each other, and the maps from the inputs alone (the masks); two runs of the original
model with different noise give the ceiling.

A stage is re-initialised with each submodule's own ``reset_parameters`` (Linear, Conv, norms) under a fixed seed, a
parameter of a module without one (a learned null context, a position table) redrawn from a normal distribution of
its own standard deviation; every parameter and buffer of the stage is restored on exit, also on an exception.
The cover is every parameter that requires a gradient outside ``OUTSIDE`` (the autoencoder: the pixel codec, frozen
in every family, not what makes the maps); ``uncovered`` lists what a set of stages leaves out.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from i2am.adapters._anatomy import Stage
from i2am.engine import CaptureConfig
from i2am.engine.factory import capture_for
from i2am.evaluation.rerun import regenerate, require_sampler_loop
from i2am.measures.curves import map_hog, map_ssim, spearman
from i2am.measures.region_similarity import region_similarity


def adapter_stages(adapter) -> list[Stage]:
    """The randomisation stages the adapter declares, output side first (``randomization_stages()`` of the adapter
    contract: a UNet's ``denoiser_stages``, a diffusion transformer's blocks, PASD's UNet and ControlNet)."""
    return adapter.randomization_stages()


OUTSIDE = ("vae.",)


class ParameterGroup(nn.Module):
    """Loose parameters of a module whose other parameters belong to a declared stage (e.g. a learned null context
    on the model itself), as one stage; the parameters are the model's own objects, so re-initialising them here
    re-initialises the model's."""

    def __init__(self, named: Sequence[tuple[str, nn.Parameter]]):
        super().__init__()
        for name, param in named:
            self.register_parameter(name.replace(".", "__"), param)


def covered_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters the randomisation must cover: those requiring a gradient, outside ``OUTSIDE``."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(OUTSIDE)}


def uncovered(model: nn.Module, stages: Sequence[Stage]) -> list[str]:
    """Names of the parameters of ``covered_parameters`` that no stage re-initialises."""
    inside = {id(p) for _, modules in stages for m in modules for p in m.parameters()}
    return [n for n, p in covered_parameters(model).items() if id(p) not in inside]


def complete_stages(adapter) -> list[Stage]:
    """The adapter's declared stages (``adapter_stages``), then one stage per top-level part of the model holding
    parameters no declared stage covers (each the largest submodules wholly left out, plus loose parameters as a
    ``ParameterGroup``): e.g. ``projector`` (custom's token projector), ``uncond_context``, ``image_encoder``."""
    stages = list(adapter_stages(adapter))
    left = set(uncovered(adapter, stages))
    if not left:
        return stages
    groups: dict[str, list[nn.Module]] = {}
    taken: set[str] = set()
    for name, module in adapter.named_modules():
        if not name or any(name.startswith(t + ".") for t in taken):
            continue
        params = [f"{name}.{n}" for n, _ in module.named_parameters()]
        if params and all(p in left for p in params):
            groups.setdefault(name.split(".")[0], []).append(module)
            taken.add(name)
    covered = {f"{t}.{n}" for t in taken for n, _ in adapter.get_submodule(t).named_parameters()}
    loose: dict[str, list] = {}
    named = dict(adapter.named_parameters())
    for name in sorted(left - covered):
        loose.setdefault(name.split(".")[0], []).append((name, named[name]))
    for group, params in loose.items():
        groups.setdefault(group, []).append(ParameterGroup(params))
    return stages + list(groups.items())


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
                            own = list(sub.parameters(recurse=False))
                            if own and hasattr(sub, "reset_parameters"):
                                sub.reset_parameters()
                            else:
                                for param in own:
                                    std = float(param.float().std()) if param.numel() > 1 else 0.0
                                    param.normal_(0.0, std if std > 0 else 0.02)
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


def as_plane(ulam: torch.Tensor, direction: str) -> torch.Tensor:
    """One sample's ULAM as the [h, w] map the similarities compare: an image map as it is; a video map
    (docs/video_maps.md) R2G [F, h, w] as its frames stacked top to bottom [F * h, w], G2R (one map per generated
    frame, [F, hr, wr]) as the whole video's, the mean over frames."""
    if ulam.dim() == 2:
        return ulam
    return ulam.flatten(0, 1) if direction == "r2g" else ulam.mean(0)


@torch.no_grad()
def ulams(adapter, sampler, inputs, cfg: CaptureConfig, region: torch.Tensor | None = None) -> dict:
    """The R2G / G2R ULAMs ([h, w] each, ``as_plane``) of one run of the model on prepared ``inputs`` under
    capture."""
    with capture_for(adapter, cfg) as cap:
        if region is not None and "g2r" in cfg.directions:
            cap.set_region_mask(region.to(adapter.device))
        regenerate(adapter, sampler, inputs)
    maps = cap.maps()
    return {d: as_plane(getattr(maps, d).ulam[0].float().cpu(), d) for d in cfg.directions
            if getattr(maps, d).available}


SIMILARITIES = ("spearman", "spearman_abs", "ssim", "hog")


def similarity(original: dict, other: dict, size: tuple[int, int] | None,
               regions: dict | None = None) -> dict[str, float]:
    """Spearman with and without absolute values, SSIM and HOG similarity of each direction's maps over the whole
    grid (``{d}_{s}``) and, for a direction with a region mask in ``regions``, within it only (``{d}_{s}_region``,
    ``i2am.measures.region_similarity``)."""
    out = {}
    for direction, original_map in original.items():
        if direction not in other:
            continue
        a, b = original_map, other[direction]
        out[f"{direction}_spearman"] = spearman(a, b)
        out[f"{direction}_spearman_abs"] = spearman(a.abs(), b.abs())
        out[f"{direction}_ssim"] = map_ssim(a, b, size)
        out[f"{direction}_hog"] = map_hog(a, b, size)
        if regions and direction in regions:
            for name, value in region_similarity(a, b, regions[direction], size).items():
                out[f"{direction}_{name}_region"] = value
    return out


def _mean(dicts: Sequence[dict]) -> dict[str, float]:
    return {k: sum(d[k] for d in dicts) / len(dicts) for k in dicts[0]} if dicts else {}


def randomization_curves(adapter, sampler, sample, cfg: CaptureConfig, *, stages: Sequence[Stage] | None = None,
                         modes: Sequence[str] = ("cascading", "independent"), seeds: Sequence[int] = (0, 1, 2),
                         region: torch.Tensor | None = None, ssim_size: tuple[int, int] | None = None,
                         input_maps: dict | None = None, seed: int | None = None,
                         regions: dict | None = None) -> dict:
    """Similarity of the randomised model's ULAMs to the original's after each stage (mean over the re-init
    ``seeds``), with the reference level and the nulls.

    Returns ``{"stages", "seeds", "reference": {key: value} (two noise seeds of the original: a ceiling),
    "null_random": {key: value} (the fully randomised models of two seeds against each other, mean over pairs),
    "null_input": {key: value} (``input_maps``, maps from the inputs alone, e.g. the masks, against the original),
    "cascading" / "independent": {key: [per stage]}, "<mode>_per_seed": {seed: {key: [per stage]}}}`` with keys
    ``{r2g|g2r}_{spearman|spearman_abs|ssim|hog}``, and with ``regions`` ({direction: mask}, e.g. the inpainting
    mask for R2G, the reference's mask for G2R) the same within the region, ``..._region``. ``"maps"``: the original
    maps and those after each cascading stage under the first seed (``{"original": {d: map}, "cascading": [{d: map}]}``,
    for the figure). ``seed``: one seed (the older single-seed call).
    """
    require_sampler_loop(adapter, sampler, "model-parameter randomisation")
    seeds = [int(seed)] if seed is not None else [int(s) for s in seeds]
    stages = list(stages) if stages is not None else complete_stages(adapter)
    with torch.no_grad():   # the parts outside the stages (the VAE) are fixed: prepare once
        inputs = adapter.prepare(dict(sample))
    original = ulams(adapter, sampler, inputs, cfg, region)
    other_noise = copy.copy(sampler)
    other_noise.seed = int(getattr(sampler, "seed", 0)) + 1
    result = {"stages": [name for name, _ in stages], "seeds": seeds,
              "reference": similarity(original, ulams(adapter, other_noise, inputs, cfg, region), ssim_size, regions),
              "maps": {"original": original, "cascading": []}}
    if input_maps:
        resized = {d: F.interpolate(m.float().reshape(1, 1, *m.shape[-2:]), size=tuple(original[d].shape[-2:]),
                                    mode="area")[0, 0] for d, m in input_maps.items() if d in original}
        result["null_input"] = similarity(original, resized, ssim_size, regions)
    finals = {}
    for mode in modes:
        if mode not in ("cascading", "independent"):
            raise ValueError(f"randomization mode {mode!r}: choose from cascading, independent")
        per_seed = {}
        for s in seeds:
            curves: dict[str, list[float]] = {}
            for k in range(len(stages)):
                chosen = stages[:k + 1] if mode == "cascading" else [stages[k]]
                with randomized(chosen, s):
                    maps = ulams(adapter, sampler, inputs, cfg, region)
                if mode == "cascading" and k == len(stages) - 1:
                    finals[s] = maps
                if mode == "cascading" and s == seeds[0]:
                    result["maps"]["cascading"].append(maps)
                for key, value in similarity(original, maps, ssim_size, regions).items():
                    curves.setdefault(key, []).append(value)
            per_seed[s] = curves
        result[f"{mode}_per_seed"] = per_seed
        result[mode] = {key: [sum(per_seed[s][key][k] for s in seeds) / len(seeds) for k in range(len(stages))]
                        for key in per_seed[seeds[0]]}
    pairs = [(a, b) for i, a in enumerate(finals) for b in list(finals)[i + 1:]]
    if pairs:
        result["null_random"] = _mean([similarity(finals[a], finals[b], ssim_size, regions) for a, b in pairs])
    return result
