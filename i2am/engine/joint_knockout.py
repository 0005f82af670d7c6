"""Token knockout inside the joint attention of a diffusion transformer: reference tokens (FLUX.1 Kontext, FLUX.2,
Qwen-Image-Edit) or text tokens (SD3), the transformer counterpart of ``i2am.engine.knockout.TokenKnockout``.

A reference image's tokens sit in the same sequence as the text and the generated image. Removing some of them means:
their keys get a -inf logit in every query row that is not itself a token of that reference (text rows and
generated-image rows, in every block), so no information from them reaches the text stream or the generated image;
the reference tokens still attend to each other, but what they compute is discarded by the pipeline. Hence:

- no token removed: the attention backend is called with exactly its original arguments (bit-identical outputs);
- every token removed: text and generated tokens run as if the reference were absent, i.e. the transformer call
  without the reference tokens (FLUX.1 Kontext: the pipeline without ``image``), up to float rounding.

The mask is applied the way ``JointAttentionCapture`` reads q and k: the backend function the processor calls
(diffusers' ``dispatch_attention_fn``) is replaced by a pass-through that adds a boolean ``attn_mask`` (combined with
any mask the processor passes, e.g. Qwen's text padding) and calls the original. The backend must accept masks
(diffusers' default "native" backend does). Every row of the batch gets its own keep mask; a true-CFG negative pass
is masked like the positive one (both see the reference). A stacked CFG batch (SD3: ``[negative, positive]`` rows in
one call) is masked chunk by chunk like the conditional rows when ``chunks`` says how many chunks the call stacks.
A layout that packs some conditionings at per-sample positions (HunyuanVideo-1.5's text and glyph tokens) is masked
only for a segment at fixed positions (its SigLIP reference tokens, right after the video) and with ``rows=None``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from i2am.engine.hooks import Hooks
from i2am.engine.joint import find_blocks, intercept_blocks
from i2am.engine.knockout import KeepSelection
from i2am.engine.packing import forward_arguments, read_layout


def combine_masks(keep: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
    """``keep`` [B, 1, Lq, Lk] bool (True = may attend) combined with a processor's own mask (bool or additive,
    [B, Lk] or broadcastable to [B, heads, Lq, Lk])."""
    if attn_mask is None:
        return keep
    if attn_mask.dim() == 2:
        attn_mask = attn_mask[:, None, None, :]
    if attn_mask.dtype == torch.bool:
        return keep & attn_mask
    shape = torch.broadcast_shapes(attn_mask.shape, keep.shape)
    return attn_mask.expand(shape).masked_fill(~keep, float("-inf"))


def with_attn_mask(args: tuple, kwargs: dict, keep: torch.Tensor) -> tuple[tuple, dict]:
    """An attention backend call's arguments with ``keep`` combined into its ``attn_mask`` (positional or keyword)."""
    if args:   # attn_mask given positionally
        return (combine_masks(keep, args[0]), *args[1:]), kwargs
    return args, {**kwargs, "attn_mask": combine_masks(keep, kwargs.get("attn_mask"))}


class JointTokenKnockout(KeepSelection):
    """Context manager removing tokens of one conditioning segment (``relation``: "image:reference",
    "image:reference.1", ... or "text") from the joint attention of ``transformer``.

    layers: block names to perturb ("transformer_blocks.0.attn", ...; default every joint-attention block).
    rows: the kinds of query segments that lose the removed tokens ("text", "generated", "reference"; default every
    query outside the segment): ``rows=("text",)`` cuts only the edges from the tokens into the text stream,
    ``rows=("generated",)`` only those into the generated image (the routes of ``i2am.engine.routes``).
    chunks: callable giving the number of stacked CFG chunks of the transformer call in progress (default 1): the
    keep mask of the conditional rows is applied to every chunk, the negative prompt's tokens at the same positions.
    Inside the context, ``delete(scores, fraction)`` / ``insert(scores, fraction)`` / ``set_keep(fn)`` choose the
    tokens removed by the following transformer calls (``fn(grid) -> [B, rows*cols]`` bool, True = kept, on the
    segment's grid); ``clear()`` removes nothing.
    """

    mode = "knockout"

    def __init__(self, transformer: nn.Module, relation: str = "image:reference", layers=None,
                 chunks: Callable[[], int] | None = None, rows=None):
        self.transformer, self.relation, self._chunks = transformer, relation, chunks
        kinds = ("text", "generated", "reference")
        if rows is not None and (not rows or any(r not in kinds for r in rows)):
            raise ValueError(f"JointTokenKnockout rows={list(rows)}: choose one or more of {kinds} (or None: every "
                             f"query outside {relation!r})")
        self.rows = None if rows is None else tuple(rows)
        blocks = find_blocks(transformer)
        if layers is not None:
            names = {n.split("/", 1)[-1] for n in layers}
            unknown = names - {b.name for b in blocks}
            if unknown:
                raise ValueError(f"JointTokenKnockout layers {sorted(unknown)} are not joint-attention blocks of "
                                 f"{type(transformer).__name__}: {[b.name for b in blocks]}")
            blocks = [b for b in blocks if b.name in names]
        self.blocks = blocks
        self._keep_fn: Callable[[tuple[int, int]], torch.Tensor] | None = None
        self._current = None
        self._mask: torch.Tensor | None = None
        self._hooks = Hooks(type(self).__name__)

    # ---------------------------------------------------------------- lifecycle
    def _forget(self) -> None:
        self._current = None

    def _install(self, hooks: Hooks) -> None:
        hooks.hook(self.transformer, self._on_call, pre=True, with_kwargs=True)
        intercept_blocks(hooks, self, self.blocks, self._masked)

    # ---------------------------------------------------------------- per call
    def _on_call(self, module, args, kwargs):
        self._mask = None
        if self._keep_fn is None:
            return
        layout = read_layout(module, forward_arguments(module, args, kwargs))
        segment = next((s for s in layout.keys if s.relation == self.relation), None)
        if segment is None:
            raise ValueError(f"JointTokenKnockout: this {type(module).__name__} call has no {self.relation!r} "
                             f"tokens; its conditionings are {[s.relation for s in layout.keys]}")
        if segment.positions is not None or (self.rows is not None and layout.per_sample):
            raise ValueError(f"JointTokenKnockout: {type(module).__name__} packs "
                             f"{self.relation if segment.positions is not None else 'some conditionings'} at "
                             f"per-sample positions, which the knockout's mask does not follow; knock out a "
                             f"segment at fixed positions (HunyuanVideo-1.5: image:reference) with rows=None")
        keep = self._keep_fn(segment.grid).bool()
        batch = kwargs.get("hidden_states", args[0] if args else None).shape[0]
        chunks = 1 if self._chunks is None else int(self._chunks())
        if chunks > 1 and keep.shape[0] * chunks == batch:
            keep = keep.repeat(chunks, 1)
        if keep.shape != (batch, segment.length):
            raise RuntimeError(f"JointTokenKnockout: keep mask of shape {tuple(keep.shape)} for a batch of {batch} "
                               f"with {segment.length} {self.relation} tokens (grid {segment.grid})")
        if bool(keep.all()):
            return
        device = kwargs.get("hidden_states", args[0] if args else None).device
        mask = torch.ones(batch, 1, layout.length, layout.length, dtype=torch.bool, device=device)
        removed = ~keep.to(device)                                     # [B, Lseg]
        rows = torch.ones(layout.length, dtype=torch.bool, device=device)
        if self.rows is not None:
            rows[:] = False
            for other in layout.segments:
                if other.kind in self.rows:
                    rows[other.start:other.stop] = True
        rows[segment.start:segment.stop] = False                       # the segment's own queries keep every key
        block = mask[:, 0, :, segment.start:segment.stop]
        block[:, rows] &= ~removed[:, None, :]
        self._mask = mask

    def _masked(self, query, key, args, kwargs, heads_first: bool):
        block, self._current = self._current, None   # one backend call per block call is the joint attention
        length = query.shape[-2] if heads_first else query.shape[1]
        if block is None or self._mask is None or length != self._mask.shape[-1]:
            return args, kwargs
        return with_attn_mask(args, kwargs, self._mask)
