"""JointAttentionCapture: I2AM scores from the joint attention of a diffusion transformer (FLUX.1 Kontext, FLUX.2,
Qwen-Image-Edit, SD3, HunyuanVideo-1.5).

Each block's attention module keeps its own processor, which computes q and k (projections, q/k norms, rotary
embedding) and calls the attention backend. While a capture is active, the backend function that processor's module
calls (diffusers' ``dispatch_attention_fn``, or ``F.scaled_dot_product_attention`` for SD3's processor) is replaced
by a pass-through that hands the capture the very q and k the backend receives, then calls the original: outputs are
unchanged and diffusers' dispatch (its backend choice) stays in place. Where the call is a plain SDPA (diffusers'
native backend, or SD3's), the pass-through runs the kernel SDPA would pick through its aten op instead, which
returns the same output and each query's log-sum-exp (``i2am.engine.kernel_stats``; ``CaptureConfig.kernel_stats=
False`` turns it off): the scores of both normalisations and the routes are then normalised by it. The token
layout comes from the transformer's forward arguments (``i2am.engine.packing``). Conditionings packed at per-sample
positions (HunyuanVideo-1.5's glyph and text tokens) are gathered per sample into their tokens' input order, and
keys the backend's mask excludes (padding) take no mass, exactly as in the model.

Video (docs/video_maps.md): when the generated segment is a video's (frame, h, w) grid, R2G is the softmax over all
its positions and G2R is kept per generated frame, so the maps carry the frame axis at dim -3.

Only generated-image queries are scored, in query chunks of at most ``CaptureConfig.chunk_budget`` logits: no
[L, L] matrix is formed. Two normalisations (docs/dit_editors.md):
  "i2am"   the paper's definition on the generated x conditioning sub-block: G2R is the softmax over that
           conditioning's tokens (per generated position), R2G the softmax over generated positions (per token);
           relations "image:reference", "image:reference.1", ..., "text".
  "share"  the full joint softmax of each generated query (over text, generated and every reference token):
           G2R is the attention mass on each conditioning token (mean over generated positions), R2G the share of a
           generated token's attention that lands on that conditioning; relations "share:image:reference", ...
           Its normaliser, the row's log-sum-exp, is the attention kernel's own ("kernel-lse") where the backend
           gives it, else recomputed from the full rows ("recomputed"); ``stats_path`` says which ran.
With the kernel's log-sum-exp one generated x conditioning logits block per chunk serves both normalisations
(``i2am.engine.scores.segment_scores``).
Scores are reduced on the spot into fp32 accumulators of fixed size (memory does not grow with the steps).

Steps: one conditional transformer call is one step. A call with the same timestep as the previous one is the
negative-prompt pass of true CFG (FLUX.1 Kontext, Qwen-Image-Edit run the positive prompt first) and is not scored;
stacked CFG batches are split by ``conditional`` (``i2am.trace`` passes its per-call chunk rule).
"""
from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from i2am.engine.config import CaptureConfig
from i2am.engine.hooks import Hooks
from i2am.engine.kernel_stats import KERNEL_LSE, RECOMPUTED, additive_mask, attention_with_lse
from i2am.engine.maps import AttributionMaps
from i2am.engine.packing import READERS, JointLayout, Segment, forward_arguments, read_layout
from i2am.engine.routes import RouteRecorder, base_relation
from i2am.engine.scores import accumulate, g2r_part, segment_scores, spatial_scores
from i2am.engine.workspace import Workspace

# Processor class -> how its backend is called: "dispatch" (module global ``dispatch_attention_fn``, q/k as
# [B, L, heads, d]) or "sdpa" (module global ``F.scaled_dot_product_attention``, q/k as [B, heads, L, d]).
PROCESSORS = {"FluxAttnProcessor": "dispatch", "Flux2AttnProcessor": "dispatch",
              "Flux2ParallelSelfAttnProcessor": "dispatch", "QwenDoubleStreamAttnProcessor2_0": "dispatch",
              "JointAttnProcessor2_0": "sdpa", "LongCatImageAttnProcessor": "dispatch",
              "JoyImageAttnProcessor": "dispatch", "HunyuanVideo15AttnProcessor2_0": "dispatch"}
log = logging.getLogger(__name__)
BLOCK_PATTERN = re.compile(r"^(transformer_blocks|single_transformer_blocks|double_blocks)\.(\d+)\.attn$")
NORMALISATIONS = ("i2am", "share")


@dataclass
class JointBlock:
    """One captured attention module. ``group``: "double" (two-stream blocks) or "single" (one-stream blocks)."""

    name: str
    module: nn.Module
    group: str
    backend: str
    acc: dict = field(default_factory=dict)      # (relation, key) -> fp32 accumulator
    heads: int = 0


class _BackendProxy:
    """Stands for ``torch.nn.functional`` in a processor module: every name resolves to the real one, except
    ``scaled_dot_product_attention``."""

    def __init__(self, sdpa):
        self.scaled_dot_product_attention = sdpa

    def __getattr__(self, name):
        return getattr(F, name)


class _JointProcessor:
    """Marks the block whose processor is running, so the backend pass-through knows whom to report to."""

    def __init__(self, inner, capture: JointAttentionCapture, block: JointBlock):
        self.inner, self.capture, self.block = inner, capture, block
        # diffusers filters the kwargs a processor receives by its __call__ signature: expose the inner one.
        self.__call__ = functools.wraps(inner.__call__)(functools.partial(_JointProcessor.__call__, self))

    def __getattr__(self, name):   # _attention_backend, _parallel_config, ... of the inner processor
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def __call__(self, attn, *args, **kwargs):
        previous, self.capture._current = self.capture._current, self.block
        try:
            return self.inner(attn, *args, **kwargs)
        finally:
            self.capture._current = previous


def own_processor(processor):
    """The diffusers processor under any ``_JointProcessor`` wrappers (nested interceptions: a capture around a
    knockout)."""
    while isinstance(processor, _JointProcessor):
        processor = processor.inner
    return processor


def wrap_processors(hooks: Hooks, owner, blocks: list[JointBlock]) -> dict[str, str]:
    """Give every block (through ``hooks``) a ``_JointProcessor`` around its own processor, reporting to ``owner``;
    returns the processors' modules -> how their backend is called."""
    modules = {}
    for block in blocks:
        processor = own_processor(hooks.processor(block.module,
                                                  lambda inner, block=block: _JointProcessor(inner, owner, block)))
        modules[type(processor).__module__] = block.backend
    return modules


def _sdpa_arguments(attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False) -> dict:
    return dict(attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)


def _dispatch_arguments(attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
                        attention_kwargs=None, *, backend=None, parallel_config=None):
    sdpa = _sdpa_arguments(attn_mask, dropout_p, is_causal, scale, enable_gqa)
    return sdpa, attention_kwargs, backend, parallel_config


def _native_dispatch(args, kwargs) -> dict | None:
    """The SDPA arguments of a ``dispatch_attention_fn`` call that diffusers would run on its native backend
    (``torch.nn.functional.scaled_dot_product_attention``), None for any other backend or option."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    try:
        sdpa, attention_kwargs, backend, parallel_config = _dispatch_arguments(*args, **kwargs)
    except TypeError:   # an argument this reading does not know: leave the call to diffusers
        return None
    if attention_kwargs or parallel_config is not None or _AttentionBackendRegistry._checks_enabled:
        return None
    if backend is None:
        backend = _AttentionBackendRegistry.get_active_backend()[0]
    return sdpa if getattr(backend, "value", backend) == "native" else None


@dataclass
class BackendCall:
    """One intercepted attention-backend call: q, k, v and the other arguments as the backend receives them
    (``heads_first``: [B, heads, L, d], else diffusers' [B, L, heads, d]) and the backend function itself."""

    original: Callable
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    args: tuple
    kwargs: dict
    heads_first: bool

    @property
    def attn_mask(self):
        return self.kwargs.get("attn_mask", self.args[0] if self.args else None)

    def run(self):
        """The backend's output, computed by the backend."""
        return self.original(self.query, self.key, self.value, *self.args, **self.kwargs)

    def run_with_lse(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The backend's very output and its kernel's per-query log-sum-exp [B, heads, L]
        (``i2am.engine.kernel_stats``), or None where this call cannot give them (then ``run()``): also when the
        backend is another interception's pass-through (a knockout or a second capture entered earlier), whose
        changes to the call computing the attention here would skip."""
        if getattr(self.original, "i2am_pass_through", False):
            return None
        if self.heads_first:
            try:
                sdpa = _sdpa_arguments(*self.args, **self.kwargs)
            except TypeError:
                return None
            return attention_with_lse(self.query, self.key, self.value, **sdpa)
        sdpa = _native_dispatch(self.args, self.kwargs)
        if sdpa is None:
            return None
        mask = sdpa["attn_mask"]
        if mask is not None and mask.ndim == 2 and mask.shape == (self.query.shape[0], self.key.shape[1]):
            sdpa["attn_mask"] = mask[:, None, None, :]   # as diffusers' native backend reshapes a [B, Lk] mask
        result = attention_with_lse(*(x.permute(0, 2, 1, 3) for x in (self.query, self.key, self.value)), **sdpa)
        return None if result is None else (result[0].permute(0, 2, 1, 3), result[1])


def keep_arguments(query, key, args, kwargs, heads_first):
    """The ``before`` of a pass-through that only reads: the backend gets its arguments unchanged."""
    return args, kwargs


def patch_backend(hooks: Hooks, module, backend: str, before, attend=None) -> None:
    """Swap (through ``hooks``) the attention backend ``module``'s processors call (``"dispatch"``: its
    ``dispatch_attention_fn``, q/k [B, L, heads, d]; ``"sdpa"``: ``F.scaled_dot_product_attention`` through a proxy
    of ``F``, [B, heads, L, d]) for a pass-through: ``before(query, key, args, kwargs, heads_first)`` returns the
    (args, kwargs) the original is then called with; ``attend(BackendCall)``, when given, returns the output
    instead of the original (e.g. ``call.run_with_lse()`` to read the kernel's statistics)."""
    def through(original, heads_first):
        def call(query, key, value, *args, **kwargs):
            args, kwargs = before(query, key, args, kwargs, heads_first)
            if attend is None:
                return original(query, key, value, *args, **kwargs)
            return attend(BackendCall(original, query, key, value, args, kwargs, heads_first))
        call.i2am_pass_through = True
        return call

    if backend == "dispatch":
        hooks.replace(module, "dispatch_attention_fn", through(module.dispatch_attention_fn, False))
    else:
        hooks.replace(module, "F", _BackendProxy(through(module.F.scaled_dot_product_attention, True)))


def intercept_blocks(hooks: Hooks, owner, blocks: list[JointBlock], before, attend=None) -> None:
    """The joint-attention interception: each block's processor marks the block running (``owner._current``), and
    the backend its processor calls hands ``before`` (and ``attend``) the call it receives (``patch_backend``)."""
    for module_name, backend in wrap_processors(hooks, owner, blocks).items():
        patch_backend(hooks, sys.modules[module_name], backend, before, attend)


def find_blocks(transformer: nn.Module) -> list[JointBlock]:
    """The joint-attention modules of a supported transformer, double-stream blocks first (forward order)."""
    kind = type(transformer).__name__
    if kind not in READERS:
        raise ValueError(f"{kind} is not a supported diffusion transformer for joint-attention capture; supported: "
                         f"{sorted(READERS)}")
    blocks = []
    for name, module in transformer.named_modules():
        match = BLOCK_PATTERN.match(name)
        if not match:
            continue
        processor = own_processor(getattr(module, "processor", None))
        pname = type(processor).__name__
        if pname not in PROCESSORS:
            raise ValueError(f"{kind}.{name} runs processor {pname}, whose q and k i2am cannot see; supported "
                             f"processors: {sorted(PROCESSORS)} (i2am.engine.joint)")
        group = "single" if match.group(1).startswith("single") else "double"
        blocks.append(JointBlock(name=name, module=module, group=group, backend=PROCESSORS[pname]))
    if not blocks:
        raise ValueError(f"{kind} has no transformer_blocks.N.attn / single_transformer_blocks.N.attn module")
    return sorted(blocks, key=lambda b: (b.group != "double", int(b.name.split(".")[1])))


class JointAttentionCapture:
    """Context manager capturing I2AM accumulators from the joint attention of one diffusion transformer.

    cfg: a CaptureConfig (num_steps, time_groups, directions "r2g"/"g2r", layers as "all", "group:double",
        "group:single" or block names such as "transformer_blocks.0.attn", sram_layers as block names, chunk_budget).
    normalisations: any of "i2am" and "share" (module docstring).
    conditional: callable picking the conditional rows of a stacked CFG batch (default: every row).
    relations: the conditionings to score ("text", "image:reference", "image:reference.1", ...; None = all).
    routes: any of "twohop" and "rollout" (``i2am.engine.routes``): the indirect routes from each scored reference to
        the generated tokens, relations "twohop:image:reference", "rollout:image:reference", ...
    """

    def __init__(self, transformer: nn.Module, cfg: CaptureConfig | None = None, *,
                 normalisations=NORMALISATIONS, conditional=None, model_name: str | None = None, relations=None,
                 routes=()):
        self.cfg = cfg or CaptureConfig()
        self.transformer = transformer
        bad = [n for n in normalisations if n not in NORMALISATIONS]
        if bad or not normalisations:
            raise ValueError(f"normalisations {list(normalisations)}: choose one or more of {NORMALISATIONS}")
        self.normalisations = tuple(normalisations)
        self.relations = None if relations is None else tuple(relations)
        self.route_recorder = RouteRecorder(routes)
        self.model_name = model_name or type(transformer).__name__
        self.blocks = self._select(find_blocks(transformer))
        unknown = [n for n in self.cfg.sram_layers if n not in {b.name for b in self.blocks}]
        if unknown:
            raise ValueError(f"CaptureConfig.sram_layers {unknown} are not among the captured blocks "
                             f"{[b.name for b in self.blocks]}")
        self._conditional_rows = conditional or (lambda x: x)
        self._current: JointBlock | None = None
        self._hooks = Hooks(type(self).__name__)
        self.layout: JointLayout | None = None
        self._scoring = False
        self._last_timestep: float | None = None
        self._calls, self._step = 0, -1
        self._device = None
        self._region_mask: torch.Tensor | None = None
        self._stats_paths: set[str] = set()
        self._workspace = Workspace()
        self._columns: dict[str, torch.Tensor] = {}   # relation -> [B, length] positions of a per-sample segment
        self.skipped_repeats = 0   # calls at the timestep just scored (true CFG's negative pass), not scored

    def _select(self, blocks: list[JointBlock]) -> list[JointBlock]:
        layers = self.cfg.layers
        if layers in ("all", "all+mid", None):
            return blocks
        if isinstance(layers, str) and layers.startswith("group:"):
            groups = set(layers[len("group:"):].split(","))
            chosen = [b for b in blocks if b.group in groups]
            if not chosen:
                raise ValueError(f"no block in group(s) {sorted(groups)}; groups: double, single")
            return chosen
        names = [layers] if isinstance(layers, str) else list(layers)
        by_name = {b.name: b for b in blocks}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"unknown block(s) {missing}; joint-attention blocks are: {list(by_name)}")
        return [by_name[n] for n in names]

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> JointAttentionCapture:
        self._hooks.activate(self._install)
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.restore()
        self._current = None
        self._workspace.release()

    def _install(self, hooks: Hooks) -> None:
        hooks.hook(self.transformer, self._on_call, pre=True, with_kwargs=True)
        intercept_blocks(hooks, self, self.blocks, keep_arguments, self._attend)

    def reset(self) -> None:
        """Forget recorded scores, the layout and the step counter (e.g. before the next batch)."""
        self._calls, self._last_timestep, self.layout = 0, None, None
        self.skipped_repeats = 0
        self._stats_paths.clear()
        for block in self.blocks:
            block.acc.clear()

    def set_region_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict the G2R sum over generated positions to a region: mask [B, 1, H, W], nearest-resized to the
        generated grid (as ``AttributionCapture.set_region_mask``)."""
        self._region_mask = None if mask is None else mask.detach()

    # ---------------------------------------------------------------- hooks
    def _on_call(self, module, args, kwargs):
        arguments = forward_arguments(module, args, kwargs)
        timestep = arguments.get("timestep")
        value = None if timestep is None else float(torch.as_tensor(timestep).flatten()[0])
        if value is not None and value == self._last_timestep:
            self._scoring = False   # true CFG: the negative-prompt pass of the step just scored
            self.skipped_repeats += 1
            return
        self._last_timestep = value
        layout = read_layout(module, arguments)
        if self.layout is not None and layout != self.layout:
            raise RuntimeError(f"{type(module).__name__}: the token layout changed within one capture "
                               f"({self.layout} -> {layout}); call reset() between runs")
        if self.relations is not None:
            known = [s.relation for s in layout.keys]
            missing = [r for r in self.relations if r not in known]
            if missing:
                raise ValueError(f"relations {missing} are not in this call's token layout; it has {known}")
        if layout.generated.frames is not None and (self.cfg.sram_layers or self._region_mask is not None):
            raise ValueError(f"{type(module).__name__}: CaptureConfig.sram_layers and region masks are for image "
                             f"layers; this call's queries are a video's (frames, h, w) grid: capture without them")
        self.layout = layout
        self._columns.clear()
        self.route_recorder.start_call(layout)
        self._step = self._calls
        self._calls += 1
        if self._step >= self.cfg.num_steps:
            raise RuntimeError(f"transformer call {self._step} is beyond CaptureConfig.num_steps="
                               f"{self.cfg.num_steps}; set num_steps to the sampler's step count")
        self._scoring = True

    def _attend(self, call: BackendCall):
        """Run one backend call; when it is the joint attention of a scored block, score its q and k (with the
        kernel's log-sum-exp where the ``share`` normalisation needs it and the backend gives it)."""
        block = self._current
        if block is None or not self._scoring:
            return call.run()
        self._current = None   # one backend call per block call is the joint attention; later ones are not
        query, key = (call.query, call.key) if call.heads_first else (call.query.transpose(1, 2),
                                                                      call.key.transpose(1, 2))
        if query.shape[-2] != self.layout.length or key.shape[-2] != self.layout.length:
            raise RuntimeError(f"{block.name}: joint attention of {query.shape[-2]} queries / {key.shape[-2]} keys, "
                               f"the layout holds {self.layout.length} tokens")
        result = call.run_with_lse() if self.cfg.kernel_stats else None
        out, lse = (call.run(), None) if result is None else result
        self._note_stats_path(block, KERNEL_LSE if lse is not None else RECOMPUTED)
        attn_mask = call.attn_mask
        with torch.no_grad():
            self._record(block, self._conditional_rows(query), self._conditional_rows(key),
                         None if attn_mask is None else self._conditional_rows(attn_mask),
                         None if lse is None else self._conditional_rows(lse))
        return out

    def _note_stats_path(self, block: JointBlock, path: str) -> None:
        if path not in self._stats_paths:
            why = ("the attention kernel's own log-sum-exp" if path == KERNEL_LSE else
                   "a chunked recomputation (CaptureConfig.kernel_stats=False)" if not self.cfg.kernel_stats else
                   "a chunked recomputation (this backend call's kernel returns no log-sum-exp)")
            log.info("%s: row statistics of %s from %s [%s]", type(self).__name__, block.name, why, path)
        self._stats_paths.add(path)

    @property
    def stats_path(self) -> str | None:
        """Where the scores' per-query log-sum-exp came from: "kernel-lse" (the attention kernel's own), "recomputed"
        (softmaxes of recomputed logits), "mixed" (some blocks each), None (no block scored yet)."""
        if not self._stats_paths:
            return None
        return next(iter(self._stats_paths)) if len(self._stats_paths) == 1 else "mixed"

    # ---------------------------------------------------------------- scoring
    def _query_weight(self, grid, batch) -> torch.Tensor | None:
        if self._region_mask is None:
            return None
        mask = F.interpolate(self._region_mask.float(), size=grid, mode="nearest")
        if mask.shape[0] != batch:
            raise RuntimeError(f"region mask has batch {mask.shape[0]}, the conditional batch is {batch}")
        return mask.flatten(1)[:, None, :].to(self._device)

    def _record(self, block: JointBlock, q: torch.Tensor, k: torch.Tensor, attn_mask, lse=None) -> None:
        batch, heads, _, head_dim = q.shape
        block.heads = heads
        self._device = q.device
        scale = head_dim ** -0.5
        gen = self.layout.generated
        qg = q[:, :, gen.start:gen.stop]
        key_valid = self._key_valid(attn_mask, batch, k.shape[-2], gen)
        group = self.cfg.time_group(self._step)
        dirs = self.cfg.directions
        weight = self._query_weight(gen.grid, batch) if "g2r" in dirs else None
        sram = block.name in self.cfg.sram_layers
        if lse is not None:
            for seg in self._scored():
                self._segment_from_lse(block, seg, qg, k, scale, lse[:, :, gen.start:gen.stop], weight, key_valid,
                                       sram, group)
        else:
            if "i2am" in self.normalisations:
                for seg in self._scored():
                    ks, valid = self._segment_keys(seg, k, key_valid)
                    self._accumulate(block, seg.relation, self._sub_block(qg, ks, scale, weight, sram, valid), group)
            if "share" in self.normalisations:
                for relation, scores in self._shares(qg, k, scale, weight, key_valid, sram).items():
                    self._accumulate(block, relation, scores, group)
        if self.route_recorder.routes:
            references = [s for s in self._scored() if s.kind == "reference"]
            routed = self.route_recorder.record(q, k, self.layout, references, scale,
                                                self._chunk(batch, heads, k.shape[-2]), attn_mask=attn_mask,
                                                weight=weight, directions=dirs, sram=sram, lse=lse)
            for relation, scores in routed.items():
                self._accumulate(block, relation, scores, group)

    def _segment_from_lse(self, block, seg: Segment, qg, k, scale, lse_g, weight, key_valid, sram, group) -> None:
        """Both normalisations of one conditioning segment from one logits block per chunk, normalised by the
        kernel's log-sum-exp of each generated row (``scores.segment_scores``); I2AM's own softmaxes are recomputed
        from the segment's logits only where fp32 would lose entries of that form."""
        batch, heads = qg.shape[:2]
        ks, valid = self._segment_keys(seg, k, key_valid)
        own = "i2am" in self.normalisations
        chunk = self._chunk(batch, heads, seg.length, queries=qg.shape[-2] if own else None)
        readings = segment_scores(qg, ks, scale, lse_g, chunk=chunk,
                                  r2g="r2g" in self.cfg.directions, g2r="g2r" in self.cfg.directions, sram=sram,
                                  query_weight=weight, bias=additive_mask(valid), own=own,
                                  share="share" in self.normalisations, frames=self._frames,
                                  workspace=self._workspace)
        if "share" in readings:
            self._accumulate(block, "share:" + seg.relation, readings["share"], group)
        if "own" in readings:
            own = readings["own"]
            if own is None:
                own = self._sub_block(qg, ks, scale, weight, sram, valid)
            self._accumulate(block, seg.relation, own, group)

    def _scored(self) -> list[Segment]:
        return [s for s in self.layout.keys if self.relations is None or s.relation in self.relations]

    @property
    def _frames(self) -> int:
        """The generated segment's frames (1 for an image): G2R is kept per frame."""
        return self.layout.generated.frames or 1

    def _segment_columns(self, seg: Segment, device) -> torch.Tensor | None:
        """[B, length] positions of a per-sample segment's tokens in the conditional rows; None for a contiguous one."""
        if seg.positions is None:
            return None
        columns = self._columns.get(seg.relation)
        if columns is None or columns.device != device:
            columns = self._conditional_rows(seg.columns(device))
            self._columns[seg.relation] = columns
        return columns

    def _take(self, seg: Segment, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The segment's tokens along ``dim`` of x [B, ...] (a slice, or per sample a gather in token order)."""
        columns = self._segment_columns(seg, x.device)
        if columns is None:
            return x.narrow(dim, seg.start, seg.length)
        dim = dim % x.dim()
        shape = [columns.shape[0]] + [1] * (x.dim() - 1)
        shape[dim] = columns.shape[1]
        size = list(x.shape)
        size[dim] = columns.shape[1]
        return x.gather(dim, columns.reshape(shape).expand(size))

    def _segment_keys(self, seg: Segment, k: torch.Tensor, key_valid) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The segment's keys [B, heads, length, d] and which of them each sample may use ([B, length] or None)."""
        return self._take(seg, k, -2), None if key_valid is None else self._take(seg, key_valid, -1)

    @staticmethod
    def _key_valid(attn_mask, batch: int, length: int, gen: Segment) -> torch.Tensor | None:
        """[B, L] bool of the keys the generated queries may use (from a boolean or additive mask), None when all.
        A per-query mask ([.., L, L], e.g. a JointTokenKnockout's) must treat every generated query alike."""
        if attn_mask is None:
            return None
        if attn_mask.dim() == 4 and attn_mask.shape[-2] == length:
            rows = attn_mask[..., gen.start:gen.stop, :]
            # every generated row alike <=> per key the least and the greatest entry agree (no [Lg, L] comparison)
            low, high = (rows.all(-2), rows.any(-2)) if rows.dtype == torch.bool else (rows.amin(-2), rows.amax(-2))
            if not torch.equal(low, high):
                raise RuntimeError("the attention mask differs between generated queries; JointAttentionCapture "
                                   "reads one key mask for all of them")
            attn_mask = low
        mask = attn_mask.reshape(attn_mask.shape[0], -1)[:, -length:]
        valid = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
        valid = valid.expand(batch, -1)
        return None if bool(valid.all()) else valid

    def _chunk(self, batch, heads, keys, *, queries: int | None = None) -> int:
        """Queries per logits block; ``queries``: all of the block's when its scores include I2AM's R2G (a softmax
        over queries), which forms the block whole where it fits ``one_pass_budget``."""
        columns_first = queries is not None and "r2g" in self.cfg.directions
        return self.cfg.query_chunk(batch, heads, queries or 0, keys, columns_first=columns_first)

    def _sub_block(self, qg, ks, scale, weight, sram, valid) -> dict[str, torch.Tensor]:
        batch, heads = qg.shape[:2]
        opts = dict(r2g="r2g" in self.cfg.directions, g2r="g2r" in self.cfg.directions, sram=sram,
                    frames=self._frames)
        if valid is None:
            chunk = self._chunk(batch, heads, ks.shape[-2], queries=qg.shape[-2])
            return spatial_scores(qg, ks, scale, chunk=chunk, query_weight=weight, workspace=self._workspace, **opts)
        parts = []   # masked tokens (padding of a text stream) differ per sample: score each on its own tokens
        for b in range(batch):
            keep = valid[b]
            if not bool(keep.any()):   # no token of this conditioning in this sample (a prompt without glyphs)
                parts.append(self._no_mass(qg, ks, opts))
                continue
            chunk = self._chunk(1, heads, int(keep.sum()), queries=qg.shape[-2])
            part = spatial_scores(qg[b:b + 1], ks[b:b + 1, :, keep], scale, chunk=chunk,
                                  query_weight=None if weight is None else weight[b:b + 1], workspace=self._workspace,
                                  **opts)
            if "g2r" in part:
                full = part["g2r"].new_zeros(*part["g2r"].shape[:-1], ks.shape[-2])
                full[..., keep] = part["g2r"]
                part["g2r"] = full
            if "sram" in part:
                full = part["sram"].new_zeros(1, qg.shape[-2], ks.shape[-2])
                full[..., keep] = part["sram"]
                part["sram"] = full
            parts.append(part)
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}

    @staticmethod
    def _no_mass(qg, ks, opts) -> dict[str, torch.Tensor]:
        """One sample's scores of a conditioning it has no token of: zero."""
        heads, lg, lk, frames = qg.shape[1], qg.shape[-2], ks.shape[-2], opts["frames"]
        zeros = {"r2g": (1, heads, lg), "g2r": (1, heads, *((frames,) if frames > 1 else ()), lk),
                 "sram": (1, lg, lk)}
        return {key: qg.new_zeros(shape, dtype=torch.float32) for key, shape in zeros.items() if opts[key]}

    def _shares(self, qg, k, scale, weight, valid, sram=False) -> dict[str, dict[str, torch.Tensor]]:
        """Per conditioning segment, from the full softmax of each generated query (recomputed chunk by chunk, the
        path without the kernel's log-sum-exp): "r2g" [B, heads, Lg] the mass on the segment, "g2r" [B, heads, Lseg]
        the (weighted) sum over generated queries of each token's mass and, with ``sram``, "sram" [B, Lg, Lseg] each
        generated query's mass on each token (heads averaged)."""
        batch, heads, lg, _ = qg.shape
        keys = self._scored()
        bias = additive_mask(valid)
        r2g = {s.relation: [] for s in keys}
        g2r = {s.relation: 0 for s in keys}
        sram_parts = {s.relation: [] for s in keys}
        kt = k.float().transpose(-1, -2)
        chunk = self._chunk(batch, heads, k.shape[-2])
        for start in range(0, lg, chunk):
            logits = self._workspace.matmul(qg[:, :, start:start + chunk].float() * scale, kt)
            if bias is not None:
                logits += bias[:, None, None, :]
            probs = torch.softmax(logits, dim=-1)
            for s in keys:
                part = self._take(s, probs, -1)
                r2g[s.relation].append(part.sum(-1))
                if sram:
                    sram_parts[s.relation].append(part.mean(-3))
                rows = None if weight is None else weight[..., start:start + part.shape[-2]]
                g2r[s.relation] = g2r[s.relation] + g2r_part(part, rows, self._frames, start, lg)
        out = {}
        for s in keys:
            scores = {}
            if "r2g" in self.cfg.directions:
                scores["r2g"] = torch.cat(r2g[s.relation], dim=-1)
            if "g2r" in self.cfg.directions:
                scores["g2r"] = g2r[s.relation]
            if sram:
                scores["sram"] = torch.cat(sram_parts[s.relation], dim=-2)
            out["share:" + s.relation] = scores
        return out

    def _accumulate(self, block: JointBlock, relation: str, scores: dict, group: int) -> None:
        for kind, value in scores.items():
            accumulate(block.acc, (relation, kind), kind, value, group, self.cfg.time_groups, f"block {block.name}")

    # ---------------------------------------------------------------- results
    @property
    def steps_seen(self) -> int:
        return self._calls

    def accumulator_bytes(self) -> int:
        return sum(a.numel() * a.element_size() for b in self.blocks for a in b.acc.values())

    def _segment(self, relation: str) -> Segment:
        base = base_relation(relation)
        return next(s for s in self.layout.keys if s.relation == base)

    def maps(self) -> AttributionMaps:
        """AttributionMaps with one layer per (relation, block), named ``<relation>/<block>``: R2G on the
        generated grid, G2R on the conditioning's own grid (raw sums over steps; families via ``relation()``)."""
        if self.layout is None or not any(b.acc for b in self.blocks):
            raise RuntimeError("no joint-attention block was called: run the transformer inside the capture first")
        gen = self.layout.generated
        qh, qw = gen.grid
        frames = () if gen.frames is None else (gen.frames,)   # a video's frame axis, right before (h, w)
        raw, layers = {}, []
        for block in self.blocks:
            relations = list(dict.fromkeys(rel for rel, _ in block.acc))
            for relation in relations:
                seg = self._segment(relation)
                name = f"{relation}/{block.name}"
                for key in ("r2g", "g2r", "sram"):
                    acc = block.acc.get((relation, key))
                    if acc is None:
                        continue
                    if key == "r2g":
                        raw[f"r2g/{name}"] = acc.reshape(*acc.shape[:3], *frames, qh, qw)
                    elif key == "g2r":   # per frame of a video: the mean over that frame's qh x qw positions
                        raw[f"g2r/{name}"] = acc.reshape(*acc.shape[:3], *frames, *seg.grid) / (qh * qw)
                    else:
                        raw[f"sram/{name}"] = acc
                layers.append({"name": name, "group": block.group, "heads": block.heads,
                               "query_grid": [*frames, qh, qw],
                               "ref_grid": list(seg.grid), "degenerate_g2r": False, "relation": relation,
                               "block": block.name})
        meta = {"model": self.model_name, "num_steps": self.cfg.num_steps, "time_groups": self.cfg.time_groups,
                "steps_seen": self._calls, "cfg_layout": "joint", "directions": list(self.cfg.directions),
                "layers": layers, "r2g_grid": self.cfg.r2g_grid, "g2r_grid": self.cfg.g2r_grid, "family_layers": {},
                "segments": [{"kind": s.kind, "start": s.start, "length": s.length, "grid": list(s.grid),
                              "relation": s.relation, **({"frames": s.frames} if s.frames is not None else {}),
                              **({"per_sample": True} if s.positions is not None else {})}
                             for s in self.layout.segments],
                "normalisations": list(self.normalisations)}
        if self.stats_path is not None:
            meta["stats_path"] = self.stats_path
        return AttributionMaps(raw, meta)


def word_maps(maps: AttributionMaps, layer: str) -> torch.Tensor:
    """DAAM's word heat maps of a text layer: ``maps.daam_word_maps(layer)`` restricted to relation "text"."""
    if maps.layer_meta(layer).get("relation") != "text":
        raise ValueError(f"word_maps needs a layer of relation 'text', {layer!r} is "
                         f"{maps.layer_meta(layer).get('relation')!r}")
    return maps.daam_word_maps(layer)
