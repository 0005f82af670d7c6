"""Which attention layers a capture hooks, and how an adapter describes them to the engine.

The engine knows no model family. A model tells it what to hook through ``attribution_layers()``, a list of
``LayerSpec``; a bare diffusers UNet is described by ``discover_cross_attention``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from diffusers.models.attention_processor import Attention
from torch import nn

# A reference grid is a fixed (rows, cols) token grid, "query" when keys lie on the query grid (StableVITON's warp
# blocks, PASD's pixel-aware attention), "row" for a sequence laid out as one row of however many tokens arrive
# (text, IP-Adapter image tokens), "frame" for keys that are one latent frame of the queries' own video token stream
# (its (h, w) grid: LTX-2's reference frame) or None for a single token (CLIP image embedding: PBE, DCI-VTON,
# StableVITON).
RefGrid = "tuple[int, int] | str | None"


@dataclass(frozen=True)
class LayerSpec:
    """One hookable cross-attention layer.

    name: stable, human-readable id (usually the module path), used in configs and saved maps.
    module: the diffusers ``Attention`` whose processor the capture replaces.
    ref_grid: layout of the key tokens: (rows, cols), "query" (same grid as the queries) or None (one token).
    group: free label, e.g. "unet", "warp", "paca"; lets configs pick layers by family.
    mid: True for mid-block layers ("all" excludes them, "all+mid" includes them).
    query_grid: fixed query grid, or None to infer it from the latent size seen by the step module.
    key_module: the module whose output are this layer's keys (default ``module.to_k``; an IP-Adapter's
        ``to_k_ip[i]``, which lives on the processor).
    key_tokens: None (all keys), "after_query" (reference attention: the keys are [own tokens, reference tokens]
        and only the reference tokens, those after the query's own, are scored) or (start, stop), a token range as a
        Python slice (negative bounds count from the end, stop None is the end).
    relation: name of the conditioning this layer attends to ("text", "image:ip_adapter", ...) when a model has
        several; ``AttributionMaps.relation(name)`` selects its layers.
    query_module: the module whose output are this layer's queries (default ``module.to_q``).
    qk_normed: the query and key modules are the layer's own q/k norms (Wan's RMSNorm across heads), so no per-head
        norm is applied after them.
    qk_at_backend: q and k are read where the layer's processor hands them to its attention backend (diffusers'
        ``dispatch_attention_fn`` or ``F.scaled_dot_product_attention``), after its q/k norms and rotary embedding:
        exactly what it attends with (``AttributionCapture.BACKENDS`` lists the processors); no module is hooked.
    query_frames, key_frames: (start, stop) latent-frame ranges (Python slice bounds, stop None is the end) selecting
        the queries and keys of a self-attention over one frame-major video token stream (LTX-2: queries the
        generated frames 1.., keys the reference frame 0); the capture's latent grid gives the tokens per frame.
    """

    name: str
    module: Attention
    ref_grid: tuple[int, int] | str | None = None
    group: str = "xattn"
    mid: bool = False
    query_grid: tuple[int, int] | None = None
    key_module: nn.Module | None = None
    key_tokens: str | None = None
    relation: str | None = None
    query_module: nn.Module | None = None
    qk_normed: bool = False
    qk_at_backend: bool = False
    query_frames: tuple[int, int | None] | None = None
    key_frames: tuple[int, int | None] | None = None


@runtime_checkable
class SupportsAttribution(Protocol):
    """What an adapter offers the engine."""

    cfg_layout: str  # "none" | "uncond_cond" | "cond_uncond"

    def attribution_layers(self) -> list[LayerSpec]: ...

    @property
    def step_module(self) -> nn.Module:
        """The module whose forward call is one denoising step (the UNet); its pre-hook counts steps."""
        ...


def discover_cross_attention(unet: nn.Module, ref_grid=None) -> list[LayerSpec]:
    """Every cross-attention ``Attention`` of a diffusers-style UNet, in forward (registration) order."""
    specs = []
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and module.is_cross_attention:
            specs.append(LayerSpec(name=name, module=module, ref_grid=ref_grid, group="unet",
                                   mid=name.startswith("mid_block") or ".mid_block." in name))
    return specs


def select_layers(specs: Sequence[LayerSpec], layers) -> list[LayerSpec]:
    """Resolve ``CaptureConfig.layers``: "all", "all+mid", a group name prefixed by "group:", or a list of names."""
    if layers in ("all", None):
        return [s for s in specs if not s.mid]
    if layers == "all+mid":
        return list(specs)
    if isinstance(layers, str) and layers.startswith("group:"):
        groups = set(layers[len("group:"):].split(","))
        chosen = [s for s in specs if s.group in groups and not s.mid]
        if not chosen:
            raise ValueError(f"no layer in group(s) {sorted(groups)}; groups here: {sorted({s.group for s in specs})}")
        return chosen
    if isinstance(layers, str):
        layers = [layers]
    by_name = {s.name: s for s in specs}
    missing = [n for n in layers if n not in by_name]
    if missing:
        raise ValueError(f"unknown layer name(s) {missing}; hookable layers are: {list(by_name)}")
    return [by_name[n] for n in layers]
