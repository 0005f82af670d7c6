"""The model zoo: one adapter per model family, created by name.

    from i2am.models import create_model, list_models
    adapter = create_model("stableviton-tiny")             # CPU, random weights, seconds
    adapter = create_model("pbe", device="meta")           # full size, nothing allocated
    report = adapter.load_checkpoint("model.ckpt")          # original layout -> adapter modules

Every submodule and subpackage of ``i2am.models`` is imported on first use so that its ``@register_model``
factories run; a new family (e.g. ``i2am/models/pasd/``) registers itself without editing this file.
"""
from __future__ import annotations

import importlib
import pkgutil

import torch

from .registry import model_factory, register_model, registered_names

__all__ = ["create_model", "list_models", "register_model"]

_imported = False


def _import_all_submodules() -> None:
    global _imported
    if _imported:
        return
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    _imported = True


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    _import_all_submodules()
    return registered_names()


def create_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **overrides):
    """Build the adapter ``name`` with random weights.

    device="meta" builds a full-size architecture without allocating memory (for checkpoint-layout checks).
    ``overrides`` are passed to the family's factory (e.g. ``guidance=3.0``, ``image_size=(256, 192)``).
    """
    _import_all_submodules()
    adapter = model_factory(name)(device=torch.device(device), **overrides)
    adapter.name = name
    if torch.device(device).type != "meta":
        adapter.to(dtype=dtype)
    return adapter
