"""UNet anatomy: a diffusers-style UNet's stages from the output side to the input side (what the randomisation check
re-initialises, stage by stage)."""
from __future__ import annotations

from torch import nn

Stage = tuple[str, list[nn.Module]]


def _has_params(module: nn.Module | None) -> bool:
    return module is not None and any(True for _ in module.parameters())


def denoiser_stages(step_module: nn.Module, unet: nn.Module | None = None) -> list[Stage]:
    """The stages of a diffusers-style UNet (inside ``step_module``) from the output side to the input side."""
    unet = unet if unet is not None else step_module
    prefix = next((f"{n}." if n else "" for n, m in step_module.named_modules() if m is unet), None)
    if prefix is None:
        raise ValueError(f"the UNet is not a submodule of {type(step_module).__name__}")
    for attr in ("up_blocks", "down_blocks", "mid_block", "conv_in", "conv_out"):
        if not hasattr(unet, attr):
            raise ValueError(f"{type(unet).__name__} has no {attr!r}: not a diffusers-style UNet")
    stages: list[Stage] = [(f"{prefix}out", [m for m in (getattr(unet, "conv_norm_out", None), unet.conv_out)
                                              if _has_params(m)])]
    stages += [(f"{prefix}up_blocks.{i}", [unet.up_blocks[i]]) for i in reversed(range(len(unet.up_blocks)))]
    if step_module is not unet:   # e.g. StableVITON's warp blocks and spatial encoder, next to its UNet
        stages += [(name, [child]) for name, child in step_module.named_children()
                   if _has_params(child) and not any(m is unet for m in child.modules())]
    if _has_params(unet.mid_block):
        stages.append((f"{prefix}mid_block", [unet.mid_block]))
    stages += [(f"{prefix}down_blocks.{i}", [unet.down_blocks[i]]) for i in reversed(range(len(unet.down_blocks)))]
    first = [m for m in (unet.conv_in, getattr(unet, "time_embedding", None), getattr(unet, "add_embedding", None))
             if _has_params(m)]
    stages.append((f"{prefix}in", first))
    return [(name, mods) for name, mods in stages if mods]
