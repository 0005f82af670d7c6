"""Reading a PASD release and the SD-1.5 base components from local folders; recognising the variant.

A release is ``runs/<variant>/checkpoint-N/`` with two diffusers folders, ``unet/`` (the whole UNet: 686 SD-1.5 keys
plus 312 PACA keys) and ``controlnet/`` (346 keys), each ``config.json`` + ``diffusion_pytorch_model.safetensors``
(or ``.bin``). Both files use the same key names (``conv_in.weight``, ...), so in one flat state dict every key carries
its folder as a prefix: ``unet/...`` and ``controlnet/...`` (the layout of the released PASD checkpoint).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from i2am.adapters._checkpoint import CheckpointError, read_state_dict

FOLDERS = ("unet", "controlnet")
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")
VARIANTS = ("pasd", "pasd_rrdb", "pasd_light", "pasd_light_rrdb")
SUPPORTED_VARIANTS = ("pasd", "pasd_rrdb")
LIGHT_MARKERS = ("proj_in_plus", "norm2_plus", "attn2_plus")
RRDB_PREFIX = "controlnet/controlnet_cond_embedding.preprocesser."


def weight_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(f"PASD release: no weights in {folder} (expected one of {', '.join(WEIGHT_FILES)})")


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"PASD release: {path} not found")
    return json.loads(path.read_text())


def read_release(root: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, dict]]:
    """The prefixed state dict (``unet/...``, ``controlnet/...``) and the two configs of a release folder."""
    root = Path(root)
    missing = [name for name in FOLDERS if not (root / name).is_dir()]
    if missing:
        raise CheckpointError(f"PASD release {root}: missing folder(s) {missing}; expected unet/ and controlnet/ "
                              f"(e.g. runs/pasd/checkpoint-100000)")
    state, configs = {}, {}
    for name in FOLDERS:
        configs[name] = read_config(root / name)
        state.update({f"{name}/{key}": value for key, value in read_state_dict(weight_file(root / name)).items()})
    return state, configs


def split_prefixed(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{"unet": {...}, "controlnet": {...}} from a prefixed state dict; any other prefix is an error."""
    parts = {name: {} for name in FOLDERS}
    stray = []
    for key, value in state.items():
        folder, _, inner = key.partition("/")
        if folder in parts and inner:
            parts[folder][inner] = value
        else:
            stray.append(key)
    if stray:
        raise CheckpointError(f"PASD state dict: keys without a 'unet/' or 'controlnet/' prefix: {stray[:5]}"
                              f"{' ...' if len(stray) > 5 else ''}")
    return parts


def detect_variant(keys, controlnet_config: dict | None = None) -> str:
    """"pasd", "pasd_rrdb", "pasd_light" or "pasd_light_rrdb" from a release's prefixed keys (and ControlNet config)."""
    keys = list(keys)
    light = any(key.startswith("unet/") and any(m in key for m in LIGHT_MARKERS) for key in keys)
    rrdb = any(key.startswith(RRDB_PREFIX) for key in keys) or bool((controlnet_config or {}).get("use_rrdb"))
    return "pasd" + ("_light" if light else "") + ("_rrdb" if rrdb else "")


def require_supported(variant: str, source: str = "checkpoint") -> None:
    if variant in SUPPORTED_VARIANTS:
        return
    if variant not in VARIANTS:
        raise CheckpointError(f"{source}: unknown PASD variant {variant!r}; known: {VARIANTS}")
    raise CheckpointError(
        f"{source}: PASD variant {variant!r} is not supported. Its pixel-aware attention is folded into the text "
        f"transformers of up_blocks.1-3 (keys *.proj_in_plus, *.norm2_plus, *.attn2_plus) and its 1/8 up block has "
        f"none; this adapter builds the separate up_blocks.*.pixel_attentions of {SUPPORTED_VARIANTS}. "
        f"Use the 'pasd' or 'pasd_rrdb' release.")


def base_folder(root: str | Path, component: str) -> Path:
    """``root/component`` of a local SD-1.5 diffusers folder, with a clear error when it is absent."""
    path = Path(root) / component
    if not path.is_dir():
        raise FileNotFoundError(f"SD-1.5 base model: {path} not found (expected a diffusers folder with vae/, "
                                f"text_encoder/, tokenizer/, scheduler/)")
    return path
