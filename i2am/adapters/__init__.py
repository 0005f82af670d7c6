"""The model zoo: one adapter per model family, created by name.

    from i2am.adapters import create_model, list_models
    adapter = create_model("stableviton-tiny")             # CPU, random weights, seconds
    adapter = create_model("pbe", device="meta")           # full size, nothing allocated
    report = adapter.load_checkpoint("model.ckpt")          # original layout -> adapter modules
    adapter = create_model("pbe", size="tiny", unet={"block_out_channels": [64, 128, 256, 256]})   # any width

The families below are imported on first use so that their ``@register_model`` / ``register_sizes`` calls run; a new
family is one module (or subpackage) here plus one line in ``FAMILIES`` (docs/architecture.md, "Add a model
family"). Infrastructure modules are underscored (``_base``, ``_checkpoint``, ``_registry``, ...).
"""
from __future__ import annotations

import importlib
import warnings

import torch

from i2am.adapters._registry import model_factory, register_model, registered_names

__all__ = ["create_model", "list_models", "register_model"]
SIZES = ("full", "tiny", "small")

# every module that registers models (a broken family must not hide the others: its error is reported on use)
FAMILIES = ("custom", "pbe", "dcivton", "stableviton", "pasd", "diffusers.pipeline", "diffusers.dit.transformer",
            "diffusers.video.model")

_imported = False
_import_errors: dict[str, str] = {}   # family module -> error


def _import_all_submodules() -> None:
    global _imported
    if _imported:
        return
    for family in FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{family}")
        except Exception as err:  # noqa: BLE001 - reported on use, see create_model
            _import_errors[family] = f"{type(err).__name__}: {err}"
            warnings.warn(f"{__name__}.{family} failed to import ({err}); its models are unavailable")
    _imported = True


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    _import_all_submodules()
    return registered_names()


def create_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32,
                 checkpoint: str | None = None, strict: bool = True, size: str | None = None, trusted: bool = False,
                 **overrides):
    """Build the adapter ``name`` (random weights, or ``checkpoint`` loaded with ``load_checkpoint``).

    trusted: load a ``checkpoint`` that pickles Python objects besides tensors (CLI ``model.trusted=true``); such a
    file can execute arbitrary code when loaded, so it is refused by default (``read_state_dict``).

    device="meta" builds a full-size architecture without allocating memory (for checkpoint-layout checks).
    size: the preset the architecture starts from: "full", "tiny" (toy width, fixed toy VAE / DINOv2 weights, fast
    on CPU) or "small" (LDM's GroupNorm(32) at width 32; ``create_model("pbe", size="small")`` is
    ``create_model("pbe-small")``). Component overrides change any part of it, so an adapter can be built at the
    architecture of any checkpoint: ``unet={...}`` (any ``UNet2DConditionModel`` argument: block_out_channels,
    norm_num_groups, attention_head_dim, layers_per_block, ...), ``vae={...}``, ``clip_vision={...}`` (CLIP
    config keys, ``proj_size`` = the cross-attention width), ``dinov2={...}`` (Dinov2Config keys, ``image_size``,
    ``projector_blocks``, ``context_dim``), ``warp={"first_block", "heads"}`` (StableVITON's warp blocks). In Hydra:
    ``+model.unet.block_out_channels=[64,128,256,256]``. The other ``overrides`` go to the family's factory
    (e.g. ``guidance=3.0``, ``image_size=(256, 192)``, ``latent_encoding="sample"``).
    """
    from i2am.adapters._components import split_components

    _import_all_submodules()
    name = _sized_name(name, size)
    components, overrides = split_components(dict(overrides))
    if components:
        overrides["components"] = components
    if name not in registered_names() and _import_errors:
        raise KeyError(f"unknown model {name!r}; registered: {registered_names()}; submodules that failed to "
                       f"import: {_import_errors}")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    adapter = model_factory(name)(device=torch.device(device), **overrides)
    adapter.name = name
    if checkpoint is not None:
        adapter.load_checkpoint(checkpoint, strict=strict, trusted=trusted)
    if torch.device(device).type != "meta":
        adapter.to(dtype=dtype)
    return adapter


def _sized_name(name: str, size: str | None) -> str:
    """The registered preset of ``name`` at ``size`` ("full", "tiny" or "small")."""
    if size is None:
        return name
    if size not in SIZES:
        raise ValueError(f"create_model(size={size!r}): the presets are {SIZES}; any other architecture "
                         f"is a preset plus component overrides, e.g. unet={{'block_out_channels': [...]}}")
    base = name
    for suffix in ("-tiny", "-small"):
        base = base.removesuffix(suffix)
    if name != base and name != f"{base}-{size}":
        raise ValueError(f"create_model({name!r}, size={size!r}): the name already selects another preset")
    return base if size == "full" else f"{base}-{size}"
