"""Key conversion between an original checkpoint layout and an adapter's modules, in both directions.

A conversion is a list of ``Rule``s: one original key -> one model key, or one original key split along dim 0
into several model keys (fused q/k/v projections), or a 1x1 conv <-> linear reshape. The LDM <-> diffusers rules
for the UNet and the VAE are not written by hand: they are derived once by running diffusers' own single-file
converters on a template state dict whose tensors are tagged with their index (``ldm_sd_keys.json``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from i2am.adapters._checkpoint import LoadReport, is_ignorable

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class Rule:
    source: str                    # key in the original file
    targets: tuple[str, ...]       # model key(s); several = the source tensor is split in equal parts along dim 0
    squeeze: bool = False          # a [o, i, 1, 1] conv weight in the source is a [o, i] linear weight in the model


def convert_to_model(rules: list[Rule], state: dict[str, torch.Tensor], expected: dict[str, torch.Size],
                     ignorable=()) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Original-layout ``state`` -> model-key tensors, and the report (in original key names)."""
    by_source = {r.source: r for r in rules}
    report = LoadReport()
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        rule = by_source.get(key)
        if rule is None:
            (report.ignored if is_ignorable(key, ignorable) else report.unexpected).append(key)
            continue
        if rule.squeeze and value.dim() == 4:
            value = value[:, :, 0, 0]
        if len(rule.targets) > 1 and (value.dim() == 0 or value.shape[0] % len(rule.targets)):
            report.mismatched.append((key, tuple(value.shape), _source_shape(rule, expected)))
            continue
        parts = value.chunk(len(rule.targets), dim=0) if len(rule.targets) > 1 else (value,)
        for target, part in zip(rule.targets, parts):
            if target not in expected:
                continue
            if tuple(part.shape) != tuple(expected[target]):
                report.mismatched.append((key, tuple(value.shape), _source_shape(rule, expected)))
                break
            converted[target] = part
    produced_by = {t: r.source for r in rules for t in r.targets}
    report.missing = sorted({produced_by.get(k, k) for k in expected if k not in converted} - set(state))
    return converted, report


def _source_shape(rule: Rule, expected) -> tuple:
    first = tuple(expected[rule.targets[0]])
    return (first[0] * len(rule.targets),) + first[1:]


def convert_to_original(rules: list[Rule], model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model tensors -> original layout. Rules whose targets the model lacks (template keys of a layer this
    architecture does not have) are skipped; a model key no rule covers is an error."""
    uncovered = set(model_state) - {t for r in rules for t in r.targets}
    if uncovered:
        raise KeyError(f"no original-layout name for model keys {sorted(uncovered)[:10]}")
    out = {}
    for rule in rules:
        if not all(t in model_state for t in rule.targets):
            continue
        value = torch.cat([model_state[t] for t in rule.targets], 0) if len(rule.targets) > 1 \
            else model_state[rule.targets[0]]
        out[rule.source] = value[:, :, None, None] if rule.squeeze and value.dim() == 2 else value
    return out


def renamed(model_keys, model_prefix: str, source_prefix: str) -> list[Rule]:
    """One rule per model key under ``model_prefix``: the same name under ``source_prefix``."""
    return [Rule(source_prefix + k[len(model_prefix):], (k,)) for k in model_keys if k.startswith(model_prefix)]


@cache
def _ldm_templates() -> dict:
    return json.loads((CONFIG_DIR / "ldm_sd_keys.json").read_text())


@cache
def ldm_unet_key_map() -> dict[str, str]:
    """LDM ``UNetModel`` key (no prefix) -> diffusers ``UNet2DConditionModel`` key, from diffusers' converter."""
    from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint
    names = _ldm_templates()["unet"]
    tagged = {LDM_UNET_KEY + n: torch.tensor([float(i)]) for i, n in enumerate(names)}
    layout = json.loads((CONFIG_DIR / "unet.json").read_text())["full"]  # names depend on the layout only
    converted = convert_ldm_unet_checkpoint(tagged, layout)
    return {names[int(v.item())]: k for k, v in converted.items()}


@cache
def ldm_vae_key_map() -> dict[str, tuple[str, bool]]:
    """LDM KL-VAE key (no prefix) -> (diffusers ``AutoencoderKL`` key, 1x1-conv-to-linear squeeze)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    names = _ldm_templates()["vae"]
    tagged = {"first_stage_model." + n: torch.full((1, 1, 1, 1), float(i)) for i, n in enumerate(names)}
    converted = convert_ldm_vae_checkpoint(tagged, json.loads((CONFIG_DIR / "vae.json").read_text())["full"])
    return {names[int(v.flatten()[0].item())]: (k, v.dim() == 2) for k, v in converted.items()}


def ldm_unet_rules(source_prefix: str, model_prefix: str, only=None) -> list[Rule]:
    """Rules for an SD-1.x layout UNet; ``only`` keeps LDM keys with these leading names (e.g. the encoder half)."""
    return [Rule(source_prefix + ldm, (model_prefix + dif,)) for ldm, dif in ldm_unet_key_map().items()
            if only is None or ldm.split(".")[0] in only]


def ldm_vae_rules(source_prefix: str, model_prefix: str) -> list[Rule]:
    return [Rule(source_prefix + ldm, (model_prefix + dif,), squeeze) for ldm, (dif, squeeze) in
            ldm_vae_key_map().items()]
