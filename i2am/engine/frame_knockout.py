"""Token knockout of the reference frame's tokens in LTX-2's video self-attention (``LTX2ImageToVideoPipeline``), the
counterpart of ``i2am.engine.knockout.TokenKnockout`` for a reference kept as latent frame 0 of the video tokens.

The generated frames 1..F-1 read the reference only through every block's ``attn1`` (``i2am.engine.ltx2_layers``).
Removing some reference tokens gives their keys a -inf logit in the rows of the generated frames' queries, so the
remaining keys share the attention exactly as the model computes it; the reference frame's own queries keep every
key (the pipeline keeps that frame clean and discards what the transformer predicts for it). The mask is added
where the processor calls its attention backend (``i2am.engine.joint.intercept_blocks``, the mechanism of
``i2am.engine.joint_knockout``): a boolean ``attn_mask`` [B, 1, L, L], combined with any mask the processor passes.
With nothing removed the backend gets its original arguments (bit-identical). Every transformer call is masked alike:
the CFG rows [negative, positive] (each chunk with the conditional rows' keep mask) and the spatio-temporal and
modality-isolation guidance calls, which all see the reference frame.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from i2am.engine.hooks import Hooks
from i2am.engine.joint import JointBlock, intercept_blocks
from i2am.engine.joint_knockout import with_attn_mask
from i2am.engine.knockout import KeepSelection, named_layers
from i2am.engine.ltx2_layers import latent_grid, ltx2_layer_specs


class ReferenceFrameKnockout(KeepSelection):
    """Context manager removing reference-frame tokens from the video self-attention (``attn1``) of an
    ``LTX2VideoTransformer3DModel`` for the generated frames' queries.

    layers: layer names ("image:reference/transformer_blocks.<i>.attn1", or the block path) to perturb; default every
    block. Inside the context, ``delete(scores, fraction)`` / ``insert(scores, fraction)`` / ``set_keep(fn)`` choose
    the tokens removed by the following transformer calls (``fn((h, w)) -> [B, h*w]`` bool, True = kept, on the
    reference frame's grid, ``ref_grid="frame"``); ``clear()`` removes nothing.
    """

    mode = "knockout"

    def __init__(self, transformer: nn.Module, layers=None):
        specs = named_layers([s for s in ltx2_layer_specs(transformer) if s.relation == "image:reference"], layers,
                             "ReferenceFrameKnockout", f"video self-attention layers of {type(transformer).__name__}")
        self.transformer, self.layers = transformer, specs
        self._keep_fn: Callable[[tuple[int, int]], torch.Tensor] | None = None
        self._mask: torch.Tensor | None = None
        self._current = None   # the attn1 whose processor is running (set by its intercepting processor)
        self._hooks = Hooks(type(self).__name__)

    def _forget(self) -> None:
        self._mask = None

    def _install(self, hooks: Hooks) -> None:
        hooks.hook(self.transformer, self._on_call, pre=True, with_kwargs=True)
        blocks = [JointBlock(name=s.name, module=s.module, group=s.group, backend="dispatch") for s in self.layers]
        intercept_blocks(hooks, self, blocks, self._masked)

    def _on_call(self, module, args, kwargs) -> None:
        """The mask of this transformer call: rows of the generated frames lose the removed reference keys."""
        self._mask = None
        if self._keep_fn is None:
            return
        frames, height, width = latent_grid(args, kwargs)
        cells = height * width
        keep = self._keep_fn((height, width)).bool()
        batch = kwargs.get("hidden_states", args[0] if args else None).shape[0]
        if keep.shape[-1] != cells or batch % keep.shape[0]:
            raise RuntimeError(f"ReferenceFrameKnockout: keep mask of shape {tuple(keep.shape)} for a transformer "
                               f"call of {batch} rows with {cells} reference tokens ({height} x {width})")
        keep = keep.repeat(batch // keep.shape[0], 1)   # CFG chunks: the negative rows like the positive ones
        if bool(keep.all()):
            return
        device = kwargs.get("hidden_states", args[0] if args else None).device
        length = frames * cells
        mask = torch.ones(batch, 1, length, length, dtype=torch.bool, device=device)
        mask[:, 0, cells:, :cells] = keep.to(device)[:, None, :]
        self._mask = mask

    def _masked(self, query, key, args, kwargs, heads_first: bool):
        if self._current is None or self._mask is None:
            return args, kwargs
        return with_attn_mask(args, kwargs, self._mask)
