"""Token knockout of the reference's CLIP image tokens in a Wan 2.1 video transformer (WanImageToVideoPipeline,
ChronoEdit, SkyReels-V2), the Wan counterpart of ``i2am.engine.knockout.TokenKnockout``.

Every block's ``attn2`` gives the image tokens (the context tokens before the last ``WAN_TEXT_TOKENS``) their own
softmax, whose output is added to the text attention's (``i2am.engine.wan_layers``). Removing some of them is giving
them a -inf logit in that softmax, which is the same as leaving them out of the key set: the processor is called, row
by row, on a context without the removed image tokens (the text tokens untouched), so the remaining ones share the
attention exactly as the model computes it. With every image token removed the image branch attends to no key and
adds nothing (the layer without its image cross-attention). With nothing removed the original processor runs on the
whole batch (bit-identical). Both transformer calls of a CFG step are masked alike: the pipeline gives the
unconditional call the same image tokens.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from i2am.engine.hooks import Hooks
from i2am.engine.knockout import KeepSelection, named_layers
from i2am.engine.wan_layers import WAN_TEXT_TOKENS, wan_layer_specs


class _ImageTokenKnockout:
    """The processor of one ``attn2`` inside ``WanImageTokenKnockout``."""

    def __init__(self, inner, owner: WanImageTokenKnockout):
        self.inner, self.owner = inner, owner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None,
                 **kwargs):
        keep = self.owner.keep_for(encoder_hidden_states)
        if keep is None or bool(keep.all()):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        images = encoder_hidden_states.shape[1] - WAN_TEXT_TOKENS
        rows = []
        for b in range(hidden_states.shape[0]):
            context = encoder_hidden_states[b:b + 1]
            kept = torch.cat([context[:, :images][:, keep[b]], context[:, images:]], dim=1)
            rows.append(self.inner(attn, hidden_states[b:b + 1], kept, attention_mask, rotary_emb, **kwargs))
        return torch.cat(rows)


class WanImageTokenKnockout(KeepSelection):
    """Context manager removing reference image tokens from the ``attn2`` layers of a Wan transformer.

    layers: layer names ("image:reference/blocks.<i>.attn2", or the block path) to perturb; default every block.
    Inside the context, ``delete(scores, fraction)`` / ``insert(scores, fraction)`` / ``set_keep(fn)`` choose the
    tokens removed by the following transformer calls (``fn((1, tokens)) -> [B, tokens]`` bool, True = kept: the
    image tokens are one row, ``ref_grid="row"``); ``clear()`` removes nothing.
    """

    mode = "knockout"

    def __init__(self, transformer: nn.Module, layers=None):
        specs = named_layers([s for s in wan_layer_specs(transformer) if s.relation == "image:reference"], layers,
                             "WanImageTokenKnockout", f"image cross-attention layers of {type(transformer).__name__}")
        self.layers = specs
        self._keep_fn: Callable[[tuple[int, int]], torch.Tensor] | None = None
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self._hooks = Hooks(type(self).__name__)


    def _install(self, hooks: Hooks) -> None:
        for spec in self.layers:
            hooks.processor(spec.module, lambda inner: _ImageTokenKnockout(inner, self))

    def keep_for(self, context: torch.Tensor | None) -> torch.Tensor | None:
        """[B, image tokens] keep mask of one ``attn2`` call, or None (nothing removed)."""
        if self._keep_fn is None or context is None:
            return None
        grid = (1, context.shape[1] - WAN_TEXT_TOKENS)
        if grid not in self._cache:
            self._cache[grid] = self._keep_fn(grid).to(context.device, torch.bool)
        keep = self._cache[grid]
        if keep.shape != (context.shape[0], grid[1]):
            raise RuntimeError(f"WanImageTokenKnockout: keep mask of shape {tuple(keep.shape)} for a transformer "
                               f"call of {context.shape[0]} rows with {grid[1]} image tokens")
        return keep
