"""The fixed text conditioning of the diffusion-transformer adapters (no text encoder is run): zeros, or the
tensors of a safetensors file computed once elsewhere with the pipeline's ``encode_prompt``."""
from __future__ import annotations

from pathlib import Path

import torch


def read_prompt_embeds(path: str | Path | None, tokens: int, width: int, pooled_width: int | None):
    """The fixed text conditioning: ``(prompt_embeds [1, T, D], pooled [1, P] or None)``, zeros unless ``path``."""
    if path is None:
        pooled = None if pooled_width is None else torch.zeros(1, pooled_width)
        return torch.zeros(1, tokens, width), pooled
    from safetensors.torch import load_file

    state = load_file(str(path))
    if "prompt_embeds" not in state:
        raise KeyError(f"model.prompt_embeds={path}: no 'prompt_embeds' tensor (keys {sorted(state)})")
    embeds = state["prompt_embeds"].reshape(1, *state["prompt_embeds"].shape[-2:])
    if embeds.shape[-1] != width:
        raise ValueError(f"model.prompt_embeds={path}: width {embeds.shape[-1]}, the transformer reads {width}")
    pooled = state.get("pooled_prompt_embeds")
    if pooled_width is not None and pooled is None:
        raise KeyError(f"model.prompt_embeds={path}: this pipeline also needs 'pooled_prompt_embeds'")
    return embeds, None if pooled is None else pooled.reshape(1, -1)


def read_prompt_mask(path: str | Path | None, embeds: torch.Tensor) -> torch.Tensor:
    """Qwen-Image-Edit's text padding mask [1, T]: all ones unless ``path`` holds a 'prompt_embeds_mask'."""
    if path is not None:
        from safetensors.torch import load_file

        mask = load_file(str(path)).get("prompt_embeds_mask")
        if mask is not None:
            if mask.numel() != embeds.shape[1]:
                raise ValueError(f"model.prompt_embeds={path}: prompt_embeds_mask has {mask.numel()} entries for "
                                 f"{embeds.shape[1]} text tokens")
            return mask.reshape(1, -1).long()
    return torch.ones(1, embeds.shape[1], dtype=torch.long)


def read_negative_embeds(path: str | Path | None, embeds: torch.Tensor, pooled: torch.Tensor | None):
    """SD3's negative (unconditional) text conditioning: zeros shaped like ``embeds`` / ``pooled`` unless ``path``
    holds 'negative_prompt_embeds' (and then also 'negative_pooled_prompt_embeds')."""
    state = {}
    if path is not None:
        from safetensors.torch import load_file

        state = load_file(str(path))
    if "negative_prompt_embeds" not in state:
        return torch.zeros_like(embeds), None if pooled is None else torch.zeros_like(pooled)
    negative = state["negative_prompt_embeds"].reshape(1, *state["negative_prompt_embeds"].shape[-2:])
    if negative.shape != embeds.shape:
        raise ValueError(f"model.prompt_embeds={path}: negative_prompt_embeds {tuple(negative.shape)} and "
                         f"prompt_embeds {tuple(embeds.shape)} differ in shape (the pipeline stacks them)")
    if "negative_pooled_prompt_embeds" not in state:
        raise KeyError(f"model.prompt_embeds={path}: negative_prompt_embeds needs 'negative_pooled_prompt_embeds'")
    return negative, state["negative_pooled_prompt_embeds"].reshape(1, -1)
