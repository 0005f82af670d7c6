"""Reference-token knockout: remove chosen reference tokens from every cross-attention layer that reads them.

Faithfulness checks (docs/faithfulness.md) perturb the model only through its attention, never through the pixels of
the reference. Two removals:

- ``"knockout"`` (default): the removed tokens' logits are set to -inf before the softmax over reference tokens, so
  no query can attend to them; the remaining tokens share the attention. A query whose every token is removed
  attends to nothing: its attention output is 0, exactly what the layer computes for an empty reference (zero key
  tokens), so the layer adds only its output projection's bias.
- ``"replace"``: the removed tokens are replaced, before the key and value projections, by the same positions of a
  replacement context (the model's unconditional context, where it has one of the same length).

Which tokens a layer loses is decided per sample from a score map on any grid: the map is resized (bilinear) to the
layer's reference grid and the top ``fraction`` of that layer's tokens (deletion) or all but them (insertion) go.
Only layers with spatial reference tokens are touched; with CFG only the conditional batch chunk is perturbed.
With nothing to remove a layer runs its original processor, so a knockout of no token is bit-identical to the model.

Two key streams beside a layer's own context (docs/pipelines.md, "Knockout"):

- IP-Adapter image tokens (``IPAdapterAttnProcessor(2_0)``; the layer's ``key_module`` is one ``to_k_ip[i]``): the
  tokens are removed from that adapter's own softmax (``to_k_ip`` / ``to_v_ip`` branch), the text branch is left
  as it is. They are not spatial: the scores are a [B, 1, tokens] G2R vector (``ref_grid="row"``). With every image
  token removed the branch adds nothing, which is the layer at IP-Adapter scale 0.
- Reference attention (a processor with ``reference_keys = True``): the reference tokens after the own tokens of a
  self-attention, on the query grid; the own tokens are always kept. With every reference token removed the layer
  is plain self-attention (no reference).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from i2am.engine.capture import _grid_for, watch_denoise_layout
from i2am.engine.cfg_rows import conditional_rows
from i2am.engine.contract import AttributionAdapter
from i2am.engine.hooks import Hooks
from i2am.engine.layers import LayerSpec, SupportsAttribution, discover_cross_attention

MODES = ("knockout", "replace")


def rank_keep_mask(scores: torch.Tensor, grid: tuple[int, int], fraction: float, keep_top: bool) -> torch.Tensor:
    """[B, h, w] scores -> [B, rows*cols] bool keep mask on ``grid``.

    The scores are resized to the grid; the ``round(fraction * rows * cols)`` highest tokens (ties: lower index
    first) are removed (``keep_top=False``, deletion) or are the only ones kept (``keep_top=True``, insertion).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"knockout fraction must lie in [0, 1], got {fraction}")
    scores = scores.float()
    if tuple(scores.shape[-2:]) != tuple(grid):
        scores = F.interpolate(scores[:, None], size=tuple(grid), mode="bilinear", align_corners=False)[:, 0]
    flat = scores.flatten(1)
    count = round(fraction * flat.shape[1])
    order = torch.argsort(-flat, dim=1, stable=True)[:, :count]
    top = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
    return top if keep_top else ~top


def masked_attention(attn, hidden_states, encoder_hidden_states, keep: torch.Tensor, attention_mask=None,
                     temb=None) -> torch.Tensor:
    """A diffusers ``Attention`` call in which keys with ``keep == False`` ([B, Lk] bool) get -inf logits.

    Follows the standard processor step by step (spatial/group norm, q/k/v, per-head norms, output projection,
    residual, rescale); a query row with no kept key gets probability 0 everywhere.
    """
    hidden_states, residual, spatial = _processor_input(attn, hidden_states, temb)
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
    head_dim = key.shape[-1] // attn.heads

    def heads(x):
        return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

    query, key, value = heads(query), heads(key), heads(value)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    logits = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
    if attention_mask is not None:
        mask = attn.prepare_attention_mask(attention_mask, key.shape[-2], batch)
        logits = logits + mask.view(batch, attn.heads, -1, mask.shape[-1]).float()
    logits = logits.masked_fill(~keep[:, None, None, :], float("-inf"))
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)     # rows with no kept key: 0, not NaN
    out = torch.matmul(probs.to(value.dtype), value)
    out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
    return _processor_output(attn, out, residual, spatial)


def _processor_input(attn, hidden_states, temb):
    """The standard processor's input side: spatial norm, [B, C, H, W] -> [B, HW, C] tokens, group norm. Returns
    (tokens, the residual, the [B, C, H, W] shape or None)."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    spatial = None
    if hidden_states.ndim == 4:
        spatial = hidden_states.shape
        hidden_states = hidden_states.view(spatial[0], spatial[1], spatial[2] * spatial[3]).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return hidden_states, residual, spatial


def _processor_output(attn, out, residual, spatial):
    """The standard processor's output side: output projection and dropout, back to [B, C, H, W], residual,
    rescale."""
    out = attn.to_out[1](attn.to_out[0](out))
    if spatial is not None:
        out = out.transpose(-1, -2).reshape(spatial)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def _attend(query, key, value, scale: float, keep: torch.Tensor | None, mask=None) -> torch.Tensor:
    """Attention of [B, heads, L, d] tensors in which keys with ``keep == False`` ([B, Lk]) get -inf logits (rows
    with no kept key: 0); ``keep=None``: the fused kernel, as the processors run it."""
    if keep is None:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    logits = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if mask is not None:
        logits = logits + mask.float()
    logits = logits.masked_fill(~keep[:, None, None, :], float("-inf"))
    return torch.matmul(torch.softmax(logits, dim=-1).nan_to_num(0.0).to(value.dtype), value)


def ip_adapter_attention(attn, processor, hidden_states, encoder_hidden_states: tuple, keeps: dict,
                         attention_mask=None, temb=None) -> torch.Tensor:
    """An ``IPAdapterAttnProcessor(2_0)`` call in which tokens are removed per stream: ``keeps`` maps "text" or an
    adapter index to a [B, tokens] bool keep mask (image tokens of an adapter flattened over its images)."""
    text, ip_states = encoder_hidden_states
    hidden_states, residual, spatial = _processor_input(attn, hidden_states, temb)
    batch = hidden_states.shape[0]
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, text.shape[1], batch)
        attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
    query = attn.to_q(hidden_states)
    if attn.norm_cross:
        text = attn.norm_encoder_hidden_states(text)
    key, value = attn.to_k(text), attn.to_v(text)
    head_dim = key.shape[-1] // attn.heads

    def heads(x):
        return x.reshape(batch, -1, attn.heads, head_dim).transpose(1, 2)

    def merge(x):
        return x.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)

    query = heads(query)
    out = merge(_attend(query, heads(key), heads(value), attn.scale, keeps.get("text"), attention_mask))
    for i, (tokens, scale, to_k_ip, to_v_ip) in enumerate(zip(ip_states, processor.scale, processor.to_k_ip,
                                                               processor.to_v_ip)):
        if isinstance(scale, (list, tuple)):
            if len(set(scale)) != 1:
                raise NotImplementedError("token knockout with one IP-Adapter scale per image is not supported")
            scale = scale[0]
        if scale == 0:
            continue
        tokens = tokens.reshape(batch, -1, tokens.shape[-1])
        ip = _attend(query, heads(to_k_ip(tokens)), heads(to_v_ip(tokens)), attn.scale, keeps.get(i))
        out = out + scale * merge(ip)
    return _processor_output(attn, out, residual, spatial)


def _query_tokens(hidden_states) -> int:
    return hidden_states.shape[1] if hidden_states.ndim == 3 else hidden_states.shape[-2] * hidden_states.shape[-1]


class _KnockoutProcessor:
    def __init__(self, inner, owner: TokenKnockout, spec: LayerSpec):
        self.inner, self.owner, self.spec = inner, owner, spec

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if getattr(self.inner, "reference_keys", False):
            return self._reference(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if isinstance(encoder_hidden_states, tuple) and hasattr(self.inner, "to_k_ip"):
            return self._ip_adapter(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args,
                                    **kwargs)
        keep = self.owner._keep_for(self.spec, hidden_states, encoder_hidden_states)
        if keep is None or bool(keep.all()):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if self.owner.mode == "replace":
            replacement = self.owner._replacement_for(encoder_hidden_states)
            encoder_hidden_states = torch.where(keep[..., None], encoder_hidden_states, replacement)
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        return masked_attention(attn, hidden_states, encoder_hidden_states, keep, attention_mask, temb)

    def _refuse_replace(self, stream: str):
        if self.owner.mode == "replace":
            raise NotImplementedError(
                f"layer {self.spec.name}: removal 'replace' swaps tokens of the layer's context for the unconditional "
                f"context's; {stream} have no such replacement (use removal 'knockout')")

    def _reference(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs):
        # the reference tokens lie on the query grid (i2am.engine.pipelines: ref_grid="query")
        lq = _query_tokens(hidden_states)
        keep = self.owner._keep_tokens(self.spec, lq, lq, hidden_states.shape[0], hidden_states.device)
        if keep is None or bool(keep.all()):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        self._refuse_replace("reference-attention tokens")
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args,
                          reference_keep=keep, **kwargs)

    def _ip_adapter(self, attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs):
        text, ip_states = encoder_hidden_states
        lq, batch = _query_tokens(hidden_states), hidden_states.shape[0]
        key_module = self.spec.key_module
        if key_module is None:
            stream, lk = "text", text.shape[1]
        else:
            stream = next(i for i, m in enumerate(self.inner.to_k_ip) if m is key_module)
            lk = ip_states[stream].reshape(batch, -1, ip_states[stream].shape[-1]).shape[1]
        keep = self.owner._keep_tokens(self.spec, lq, lk, batch, hidden_states.device)
        if keep is None or bool(keep.all()):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        self._refuse_replace("IP-Adapter image tokens" if stream != "text" else "text tokens next to an IP-Adapter")
        if kwargs.get("ip_adapter_masks") is not None:
            raise NotImplementedError(f"layer {self.spec.name}: token knockout with ip_adapter_masks is not supported")
        return ip_adapter_attention(attn, self.inner, hidden_states, encoder_hidden_states, {stream: keep},
                                    attention_mask, temb)


def named_layers(specs: list[LayerSpec], layers, owner: str, kind: str) -> list[LayerSpec]:
    """The ``specs`` named in ``layers`` (full names "<relation>/<path>" or module paths; None: all of them); an
    unknown name raises, naming ``owner`` and the ``kind`` of layer it perturbs."""
    if layers is None:
        return specs
    names = {str(n).split("/", 1)[-1] for n in layers}
    unknown = names - {s.name.split("/", 1)[-1] for s in specs}
    if unknown:
        raise ValueError(f"{owner} layers {sorted(unknown)} are not {kind}: {[s.name for s in specs]}")
    return [s for s in specs if s.name.split("/", 1)[-1] in names]


class KeepSelection:
    """What every knockout shares (``TokenKnockout``, the joint-attention, Wan image-token and LTX-2 reference-frame
    knockouts): which reference tokens the calls that follow keep (``set_keep(fn)``, ``delete`` / ``insert`` by a
    score map, ``clear``) and the context lifecycle: entering keeps every token and installs the subclass's hooks
    (``_install`` into ``self._hooks``), leaving restores them and drops per-call state (``_forget``)."""

    _keep_fn: Callable[[tuple[int, int]], torch.Tensor] | None = None
    _hooks: Hooks

    def __enter__(self):
        self.clear()
        self._hooks.activate(self._install)
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.restore()
        self._forget()

    def _install(self, hooks: Hooks) -> None:
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop what one call left behind (a mask, the layer in progress)."""

    def set_keep(self, fn: Callable[[tuple[int, int]], torch.Tensor] | None) -> None:
        """fn(reference grid) -> [B, rows*cols] bool (True = kept), or None to keep every token."""
        self._keep_fn = fn
        self._cache = {}

    def delete(self, scores: torch.Tensor, fraction: float) -> None:
        """Remove the top ``fraction`` of each layer's tokens by ``scores`` ([B, h, w])."""
        self.set_keep(lambda grid: rank_keep_mask(scores, grid, fraction, keep_top=False))

    def insert(self, scores: torch.Tensor, fraction: float) -> None:
        """Keep only the top ``fraction`` of each layer's tokens by ``scores`` ([B, h, w])."""
        self.set_keep(lambda grid: rank_keep_mask(scores, grid, fraction, keep_top=True))

    def clear(self) -> None:
        self.set_keep(None)


class TokenKnockout(KeepSelection):
    """Context manager removing reference tokens from the spatial-reference cross-attention layers of one model.

    ``model``: an adapter (``attribution_layers()``, ``step_module``, ``cfg_layout``) or a bare diffusers UNet with
    ``ref_grid=(rows, cols)``. ``mode``: "knockout" or "replace" (then ``replacement`` is a [1 or B, Lk, D] context
    whose token count matches the layers', e.g. the model's unconditional context). ``layers``: names to perturb
    (default: every layer with spatial reference tokens, mid block included, since each of them reads the reference).

    Inside the context, ``delete(scores, fraction)`` / ``insert(scores, fraction)`` / ``set_keep(fn)`` choose the
    tokens removed by the following model calls; ``clear()`` removes nothing. Batch rows of ``scores`` are the
    conditional samples of the calls that follow.

    A layer whose reference tokens are a range of its context (``LayerSpec.key_tokens=(start, stop)``, e.g.
    I2VGen-XL's reference-latent tokens between the prompt and the CLIP tokens) loses tokens of that range only.
    ``frames_in_batch``: as for ``AttributionCapture``, a callable giving the frames F of the call in progress when
    the step module folds them into the batch (rows (chunk, sample, frame)): each sample's keep mask then holds for
    every one of its frames.
    """

    def __init__(self, model: nn.Module, *, ref_grid=None, mode: str = "knockout",
                 replacement: torch.Tensor | None = None, layers=None, frames_in_batch=None):
        if mode not in MODES:
            raise ValueError(f"TokenKnockout mode={mode!r}; choose from {MODES}")
        if mode == "replace" and replacement is None:
            raise ValueError("TokenKnockout(mode='replace') needs a replacement context (e.g. the unconditional one)")
        if isinstance(model, SupportsAttribution):
            specs, self.step_module = list(model.attribution_layers()), model.step_module
        else:
            specs, self.step_module = discover_cross_attention(model, ref_grid=ref_grid), model
        specs = [s for s in specs if s.ref_grid is not None]
        if layers is not None:
            names = set(layers)
            unknown = names - {s.name for s in specs}
            if unknown:
                raise ValueError(f"TokenKnockout layers {sorted(unknown)} are not spatial-reference layers: "
                                 f"{[s.name for s in specs]}")
            specs = [s for s in specs if s.name in names]
        if not specs:
            raise ValueError(f"{type(model).__name__} has no cross-attention layer with spatial reference tokens "
                             f"(a bare UNet needs ref_grid=(rows, cols)); nothing to knock out")
        self._model, self.layers, self.mode, self.replacement = model, specs, mode, replacement
        self._frames_in_batch = frames_in_batch
        self._adapter = model if isinstance(model, AttributionAdapter) else None
        self._keep_fn: Callable[[tuple[int, int]], torch.Tensor] | None = None
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self._hooks = Hooks(type(self).__name__)
        self._latent_hw: tuple[int, int] | None = None
        self._grids: dict[str, tuple[int, int]] = {}

    # ---------------------------------------------------------------- hooks
    def _install(self, hooks: Hooks) -> None:
        hooks.hook(self.step_module, self._on_step, pre=True, with_kwargs=True)
        self._call_layout = None   # the CFG layout of the adapter.denoise call in progress
        watch_denoise_layout(hooks, self._model, self._set_call_layout)
        specs: dict[nn.Module, list[LayerSpec]] = {}   # several specs may read one module (IP-Adapter key streams)
        for spec in self.layers:
            specs.setdefault(spec.module, []).append(spec)
        for module, module_specs in specs.items():   # one wrapper per spec, the first one innermost
            hooks.processor(module, lambda inner, module_specs=module_specs: functools.reduce(
                lambda processor, spec: _KnockoutProcessor(processor, self, spec), module_specs, inner))

    def _set_call_layout(self, layout: str) -> None:
        self._call_layout = layout

    def _on_step(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        if sample is not None:
            self._latent_hw = tuple(sample.shape[-2:])

    # ---------------------------------------------------------------- per call
    def _grid(self, spec: LayerSpec, lq: int, lk: int) -> tuple[int, int]:
        grid = self._grids.get(spec.name)
        if grid is None:
            if spec.ref_grid == "query":
                grid = tuple(spec.query_grid) if spec.query_grid else _grid_for(lq, self._latent_hw, spec.name)
            elif spec.ref_grid == "row":   # tokens that are not spatial (text, IP-Adapter): one row
                grid = (1, lk)
            else:
                grid = tuple(spec.ref_grid)
            if grid[0] * grid[1] != lk:
                raise RuntimeError(f"layer {spec.name}: reference grid {grid} does not hold its {lk} key tokens")
            self._grids[spec.name] = grid
        return grid

    def _conditional_rows(self, batch: int) -> slice:
        if self._adapter is None:
            return conditional_rows(batch, self._model.cfg_layout if isinstance(self._model, SupportsAttribution)
                                    else "none")
        return self._adapter.conditional_slice(batch, self._call_layout or self._adapter.cfg_layout)

    def _keep_for(self, spec: LayerSpec, hidden_states, encoder_hidden_states) -> torch.Tensor | None:
        if self._keep_fn is None or encoder_hidden_states is None:
            return None
        if not torch.is_tensor(encoder_hidden_states):
            raise NotImplementedError(
                f"layer {spec.name}: token knockout got a {type(encoder_hidden_states).__name__} of key streams for "
                f"processor {type(getattr(spec.module.processor, 'inner', spec.module.processor)).__name__}; it "
                f"removes tokens from one context tensor, IP-Adapter processors (to_k_ip) and reference attention")
        batch, lk = encoder_hidden_states.shape[:2]
        if not isinstance(spec.key_tokens, tuple):
            return self._keep_tokens(spec, _query_tokens(hidden_states), lk, batch, encoder_hidden_states.device)
        tokens = range(lk)[slice(*spec.key_tokens)]   # the reference's range of the context; the rest is kept
        keep = self._keep_tokens(spec, _query_tokens(hidden_states), len(tokens), batch, encoder_hidden_states.device)
        if keep is None:
            return None
        full = torch.ones(batch, lk, dtype=torch.bool, device=keep.device)
        full[:, tokens.start:tokens.stop] = keep
        return full

    def _keep_tokens(self, spec: LayerSpec, lq: int, lk: int, batch: int, device) -> torch.Tensor | None:
        """[batch, lk] keep mask of one layer call (all rows but the conditional ones keep every token)."""
        if self._keep_fn is None:
            return None
        grid = self._grid(spec, lq, lk)
        if grid not in self._cache:
            self._cache[grid] = self._keep_fn(grid).to(device, torch.bool)
        cond = self._cache[grid]
        frames = self._frames_in_batch() if self._frames_in_batch is not None else None
        if frames:   # rows (sample, frame) of the conditional chunk: a sample's frames share its context
            cond = cond.repeat_interleave(frames, dim=0)
        rows = self._conditional_rows(batch)
        if cond.shape != (rows.stop - rows.start, lk):
            raise RuntimeError(f"layer {spec.name}: keep mask of shape {tuple(cond.shape)} for "
                               f"{rows.stop - rows.start} conditional samples with {lk} tokens")
        keep = torch.ones(batch, lk, dtype=torch.bool, device=cond.device)
        keep[rows] = cond
        return keep

    def _replacement_for(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        rep = self.replacement.to(encoder_hidden_states.device, encoder_hidden_states.dtype)
        if rep.shape[-2:] != encoder_hidden_states.shape[-2:]:
            raise RuntimeError(f"replacement context {tuple(rep.shape)} does not match the layer's reference "
                               f"tokens {tuple(encoder_hidden_states.shape)}")
        if rep.shape[0] == 1:
            return rep.expand_as(encoder_hidden_states)
        rows = self._conditional_rows(encoder_hidden_states.shape[0])
        full = encoder_hidden_states.clone()
        full[rows] = rep
        return full
