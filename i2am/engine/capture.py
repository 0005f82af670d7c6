"""AttributionCapture: records I2AM scores from the cross-attention layers of one model during sampling.

The capture wraps the processors of the selected cross-attention layers. The original processor still computes the
layer's output (so the model's outputs are unchanged and self-attention keeps its fused kernel); forward hooks on the
layer's ``to_q``/``to_k`` hand over the q and k that the forward pass computed, and the scores of the conditional
batch chunk are reduced on the spot into fp32 accumulators of fixed size (memory does not grow with the steps).
Where a layer's processor attends with one ``F.scaled_dot_product_attention`` over exactly the keys scored
(``ONE_SDPA_CALL``), that call runs through the aten op of the kernel SDPA picks, which also returns each query's
log-sum-exp (``i2am.engine.kernel_stats``, output unchanged): the G2R softmax is then exp(logit - lse) and R2G comes
from the same pass (``spatial_scores``); elsewhere, or with ``CaptureConfig.kernel_stats=False``, both are
recomputed from the logits. ``stats_path`` says which ran.
A layer whose processor applies a rotary embedding between its q/k modules and the attention (LTX-2) is read at that
same backend call instead (``LayerSpec.qk_at_backend``): the pass-through stashes the q and k it receives, and
``LayerSpec.query_frames`` / ``key_frames`` cut a video self-attention into the frames it scores.
A forward pre-hook on the model's step module (the UNet) counts denoising steps: one UNet call is one step, except
calls the sampler marks as not being a step (the model's ``records_call`` is False, e.g. PLMS's first-step corrector
evaluation): those are neither counted nor scored.
"""
from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from i2am.engine.cfg_rows import conditional_rows
from i2am.engine.config import CaptureConfig
from i2am.engine.contract import AttributionAdapter
from i2am.engine.hooks import Hooks
from i2am.engine.joint import BackendCall, keep_arguments, patch_backend
from i2am.engine.kernel_stats import KERNEL_LSE, RECOMPUTED
from i2am.engine.layers import LayerSpec, SupportsAttribution, discover_cross_attention, select_layers
from i2am.engine.maps import AttributionMaps
from i2am.engine.scores import accumulate, r2g_single_token, spatial_scores, split_heads
from i2am.engine.workspace import Workspace

log = logging.getLogger(__name__)
# Processors that attend with exactly one F.scaled_dot_product_attention over the keys of their to_k: the kernel's
# log-sum-exp of that call normalises the layer's G2R softmax.
ONE_SDPA_CALL = ("AttnProcessor2_0",)
# Processors whose q and k ``LayerSpec.qk_at_backend`` reads at their one attention-backend call, with how that
# backend is called (``i2am.engine.joint.patch_backend``).
BACKENDS = {"AttnProcessor2_0": "sdpa", "LTX2AudioVideoAttnProcessor": "dispatch",
            "LTX2PerturbedAttnProcessor": "dispatch"}


def watch_denoise_layout(hooks: Hooks, model, record) -> None:
    """Wrap ``model.denoise`` on this instance (through ``hooks``) so that each call first reports its CFG batch
    layout (``record(model.cfg_layout_for(guidance))``); nothing for a model that is not an adapter (a bare UNet)."""
    if not isinstance(model, AttributionAdapter):
        return
    denoise = model.denoise

    def watched(x_t, t, inputs, guidance=None):
        record(model.cfg_layout_for(model.guidance if guidance is None else guidance))
        return denoise(x_t, t, inputs, guidance=guidance)

    hooks.replace(model, "denoise", watched)


def tokens_major(x: torch.Tensor, heads_first: bool) -> torch.Tensor:
    """q or k as an attention backend receives them ([B, heads, L, d] or [B, L, heads, d]) as [B, L, heads * d]."""
    return (x.transpose(1, 2) if heads_first else x).flatten(2)


def masks_keys(mask: torch.Tensor | None, conditional) -> bool:
    """Whether an attention-backend mask (boolean: True keeps; additive: 0 keeps) removes or reweights any key of
    the rows ``conditional`` picks."""
    if mask is None:
        return False
    mask = conditional(mask)
    return not bool(mask.all() if mask.dtype == torch.bool else (mask == 0).all())


def frame_tokens(x: torch.Tensor, frames: int, selected: tuple[int, int | None], name: str) -> torch.Tensor:
    """The tokens of latent frames ``selected`` (slice bounds) of a frame-major video token stream x [B, L, C]."""
    if x.shape[1] % frames:
        raise RuntimeError(f"layer {name}: {x.shape[1]} tokens do not split into {frames} latent frames")
    per_frame = x.shape[1] // frames
    start, stop, _ = slice(*selected).indices(frames)
    return x[:, start * per_frame:stop * per_frame]


def unfold_frames(q: torch.Tensor, k: torch.Tensor, lse: torch.Tensor | None, frames: int):
    """Rows (sample, frame) of a frame-folded call as one video per sample: q [B*F, L, C] -> [B, F*L, C] (frame-major
    queries), k [B*F, Lk, C] -> [B, Lk, C] (every frame of a sample attends to the same context), lse [B*F, heads, L]
    -> [B, heads, F*L]."""
    if q.shape[0] % frames:
        raise RuntimeError(f"a frame-folded batch of {q.shape[0]} rows does not split into {frames} frames")
    batch = q.shape[0] // frames
    q = q.reshape(batch, frames * q.shape[1], q.shape[2])
    k = k[::frames]
    if lse is not None:
        lse = lse.reshape(batch, frames, *lse.shape[1:]).transpose(1, 2).flatten(2)
    return q, k, lse


class _CaptureProcessor:
    """Runs the original processor, then reports the call (to each layer reading this module, in order) so the
    capture can score the stashed q and k. ``attending(module or None)`` marks the module whose processor is running
    (for the SDPA pass-through that reads the kernel's log-sum-exp)."""

    def __init__(self, inner, on_calls, attention=None, attending=None):
        self.inner = inner
        self.on_calls = on_calls
        self.attention, self.attending = attention, attending
        # diffusers' Attention.forward keeps only the cross_attention_kwargs the processor's signature names: expose
        # the inner processor's signature so kwargs such as ``ip_adapter_masks`` still reach it.
        self.__call__ = functools.wraps(inner.__call__)(functools.partial(_CaptureProcessor.__call__, self))

    def __call__(self, attn, hidden_states, *args, **kwargs):
        if self.attending is None:
            out = self.inner(attn, hidden_states, *args, **kwargs)
        else:
            self.attending(self.attention)
            try:
                out = self.inner(attn, hidden_states, *args, **kwargs)
            finally:
                self.attending(None)
        for on_call in self.on_calls:
            on_call()
        return out


@dataclass
class _LayerState:
    spec: LayerSpec
    index: int
    stash: dict = field(default_factory=dict)
    query_grid: tuple[int, int] | None = None
    ref_grid: tuple[int, int] | None = None
    heads: int = 0
    acc: dict = field(default_factory=dict)
    degenerate_g2r: bool = False


def _grid_for(tokens: int, latent_hw: tuple[int, ...] | None, name: str) -> tuple[int, ...]:
    """The query grid of a layer: the latent grid (h, w), or (frames, h, w) of a video, downsampled (ceil) by a power
    of two in space (and in time, for a video) with ``tokens`` cells."""
    if latent_hw is None:
        raise RuntimeError(f"layer {name}: no latent size seen yet; the step module must run before its layers")
    *frames, h, w = latent_hw
    for time_factor in (1, 2, 4) if frames else (1,):
        lead = (-(-frames[0] // time_factor),) if frames else ()
        for level in range(8):
            f = 2 ** level
            gh, gw = -(-h // f), -(-w // f)
            if (lead[0] if lead else 1) * gh * gw == tokens:
                return (*lead, gh, gw)
    size = "x".join(map(str, latent_hw))
    raise RuntimeError(f"layer {name}: {tokens} query tokens match no downsampling of the {size} latent; "
                       f"set LayerSpec.query_grid for this layer")


class AttributionCapture:
    """Context manager capturing R2G / G2R (and SRAM) accumulators from one model instance.

    ``model`` is an adapter (``attribution_layers()``, ``step_module``, ``denoise``, ``cfg_layout_for``) or a bare
    diffusers UNet. With ``cfg_layout="auto"`` the capture reads the guidance each ``adapter.denoise`` call is given
    (a call hook on this instance, removed on exit), so it follows a sampler that switches guidance mid-run.
    For a bare UNet whose conditioning has spatial tokens, ``ref_grid=(rows, cols)`` gives their layout.
    ``conditional``: optional callable picking the conditional rows of a layer's q or k batch, used instead of the
    two-chunk ``cfg_layout`` (``i2am.trace`` passes one that reads each pipeline call's chunk count). An adapter
    with ``conditional_slice(batch) -> slice`` (more than two CFG chunks, e.g. InstructPix2Pix) gives it itself.
    Whether the step module's call in progress is a step to record is the model's ``records_call`` (False: neither
    counted nor scored): an adapter's flag a sampler lowers around a call that is not a step (PLMS's first-step
    corrector), or what ``i2am.trace``'s source says (the unconditional call of a pipeline that runs CFG as two calls
    per step); a bare UNet records every call.
    A 5-D step input [B, C, F, H, W] is a video: query grids are (frames, h, w) and G2R is kept per frame
    (docs/video_maps.md). ``frames_in_batch``: optional callable giving the frames F of the call in progress when the
    step module folds them into the batch (rows (chunk, sample, frame), one context per sample repeated over its
    frames, as Stable Video Diffusion's and I2VGen-XL's UNets do), else None: each sample's frames are then unfolded
    into one (F, h, w) query grid and its keys read from its first frame, so the maps are video maps as above.
    ``latent_grid``: optional callable (args, kwargs) of the step module's call -> its latent grid (frames, h, w), for
    a step module whose input is a packed token sequence [B, L, C] (LTX-2's transformer).
    """

    def __init__(self, model: nn.Module, cfg: CaptureConfig | None = None, *, ref_grid=None,
                 model_name: str | None = None, conditional=None, frames_in_batch=None,
                 latent_grid=None):
        self.cfg = cfg or CaptureConfig()
        if isinstance(model, SupportsAttribution):
            specs = list(model.attribution_layers())
            self.step_module = model.step_module
        else:
            specs = discover_cross_attention(model, ref_grid=ref_grid)
            self.step_module = model
        if not specs:
            raise ValueError(f"{type(model).__name__} has no hookable cross-attention layer")
        self._model = model
        self._call_layout: str | None = None   # "auto": the layout of the adapter.denoise call in progress
        self._adapter = model if isinstance(model, AttributionAdapter) else None
        self._conditional_rows = conditional
        self._frames_in_batch = frames_in_batch
        self._latent_grid = latent_grid
        self._folded_frames: int | None = None   # frames folded into the batch in the call in progress
        self.cfg_layout = self._resolve_layout()
        self.model_name = model_name or (model.name if self._adapter is not None else type(model).__name__)
        self.layers = select_layers(specs, self.cfg.layers)
        names = [s.name for s in self.layers]
        unknown = [n for n in self.cfg.sram_layers if n not in names]
        if unknown:
            raise ValueError(f"CaptureConfig.sram_layers {unknown} are not among the captured layers {names}")
        self._states = [_LayerState(spec=s, index=i) for i, s in enumerate(self.layers)]
        self._hooks = Hooks(type(self).__name__)
        self._calls = 0
        self._step = -1
        self._unrecorded = False
        self._latent_hw: tuple[int, ...] | None = None   # (h, w), or (frames, h, w) of a video
        self._region_mask: torch.Tensor | None = None
        self._region_cache: dict[tuple[int, int], torch.Tensor] = {}
        self._warned_degenerate = False
        self._attending: nn.Module | None = None
        self._kernel_readers: dict[nn.Module, list[_LayerState]] = {}
        self._backend_readers: dict[nn.Module, list[_LayerState]] = {}
        self._stats_paths: set[str] = set()
        self._workspace = Workspace()

    def _resolve_layout(self, step: int = 0) -> str:
        layout = self.cfg.layout_at(min(step, self.cfg.num_steps - 1))
        if layout != "auto":
            return layout
        if self._call_layout is not None:
            return self._call_layout
        return self._model.cfg_layout if isinstance(self._model, SupportsAttribution) else "none"

    def _set_call_layout(self, layout: str) -> None:
        self._call_layout = layout

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> AttributionCapture:
        self._hooks.activate(self._install)
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.restore()
        self._workspace.release()
        for state in self._states:
            state.stash.clear()

    def _install(self, hooks: Hooks) -> None:
        if self.cfg.cfg_layout == "auto":   # on an adapter: the CFG layout of each denoise call, from its guidance
            watch_denoise_layout(hooks, self._model, self._set_call_layout)
        hooks.hook(self.step_module, self._on_step, pre=True, with_kwargs=True)
        recorders: dict[nn.Module, list] = {}   # several specs may read one module (IP-Adapter key streams)
        for state in self._states:
            attn = state.spec.module
            if not state.spec.qk_at_backend:   # else the backend pass-through stashes them
                hooks.hook(state.spec.query_module if state.spec.query_module is not None else attn.to_q,
                           self._stasher(state, "q"))
                hooks.hook(state.spec.key_module if state.spec.key_module is not None else attn.to_k,
                           self._stasher(state, "k"))
            recorders.setdefault(attn, []).append(self._recorder(state))
        backend_modules = {}   # processor module -> how its backend is called
        for attn, on_calls in recorders.items():
            readers = [s for s in self._states if s.spec.module is attn]
            kind = type(attn.processor).__name__
            at_backend = [s for s in readers if s.spec.qk_at_backend]
            if at_backend and kind not in BACKENDS:
                raise ValueError(f"layer {at_backend[0].spec.name} reads q and k at the attention backend, but its "
                                 f"processor {kind} is none whose backend call i2am knows: {sorted(BACKENDS)}")
            one_call = (self.cfg.kernel_stats and kind in ONE_SDPA_CALL and not at_backend
                        and all(s.spec.key_module is None and s.spec.key_tokens is None for s in readers))
            attending = self._set_attending if one_call or at_backend else None
            processor = hooks.processor(attn, lambda inner, on_calls=on_calls, attn=attn, attending=attending:
                                        _CaptureProcessor(inner, on_calls, attn, attending))
            if one_call:
                self._kernel_readers[attn] = readers
            if at_backend:
                self._backend_readers[attn] = at_backend
            if one_call or at_backend:
                backend_modules[type(processor).__module__] = BACKENDS[kind]
        for module_name, backend in sorted(backend_modules.items()):
            patch_backend(hooks, sys.modules[module_name], backend, keep_arguments, self._attend)

    def _set_attending(self, attention) -> None:
        self._attending = attention

    def _attend(self, call: BackendCall):
        """The backend call of a marked layer's processor: its q and k stashed for the layers reading them there;
        for the kernel readers, computed by the kernel SDPA picks, whose per-query log-sum-exp over the layer's keys
        is the G2R softmax's normaliser (``i2am.engine.kernel_stats``)."""
        attention, self._attending = self._attending, None   # the processor's one backend call
        for state in self._backend_readers.get(attention, ()):
            if not self._unrecorded and masks_keys(call.attn_mask, self._conditional):
                raise RuntimeError(f"layer {state.spec.name}: its attention call masks some keys of the conditional "
                                   f"rows (e.g. a padded prompt), which the scores of the q and k read at the "
                                   f"backend would not; trace it without that mask (unpadded prompts), or leave the "
                                   f"layer out (CaptureConfig.layers)")
            state.stash["q"] = tokens_major(call.query, call.heads_first)
            state.stash["k"] = tokens_major(call.key, call.heads_first)
        readers = self._kernel_readers.get(attention)
        result = None if readers is None or call.attn_mask is not None else call.run_with_lse()
        if result is None:
            return call.run()
        for state in readers:
            state.stash["lse"] = result[1]
        return result[0]

    @property
    def stats_path(self) -> str | None:
        """Where the G2R softmax's per-query log-sum-exp of the spatial-token layers came from: "kernel-lse" (the
        attention kernel's own), "recomputed" (softmax of the recomputed logits), "mixed", None (none yet)."""
        if not self._stats_paths:
            return None
        return next(iter(self._stats_paths)) if len(self._stats_paths) == 1 else "mixed"

    def reset(self) -> None:
        """Forget recorded scores and the step counter (e.g. before the next batch of samples)."""
        self._calls, self._step, self._latent_hw = 0, -1, None
        self._stats_paths.clear()
        for state in self._states:
            state.acc.clear()
        self._region_mask = None
        self._region_cache.clear()

    def set_region_mask(self, mask: torch.Tensor | None) -> None:
        """Restrict the G2R reduction over generated positions to a region (docs/method.md §3.2, custom model).

        mask: [B, 1, H, W] (any resolution; 1 = inside), nearest-resized to each layer's query grid. The masked map
        is then averaged over all positions, as the official custom-model code multiplies by the mask before the mean.
        """
        self._region_mask = None if mask is None else mask.detach()
        self._region_cache.clear()

    # ---------------------------------------------------------------- hooks
    def _on_step(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        if sample is None:
            raise RuntimeError(f"{type(module).__name__}.forward got no sample tensor to read the latent size from")
        self._folded_frames = self._frames_in_batch() if self._frames_in_batch is not None else None
        if self._latent_grid is not None:
            self._latent_hw = tuple(int(size) for size in self._latent_grid(args, kwargs))
        elif self._folded_frames:
            self._latent_hw = (self._folded_frames, *sample.shape[-2:])
        else:
            self._latent_hw = tuple(sample.shape[2:] if sample.dim() == 5 else sample.shape[-2:])
        self._unrecorded = not getattr(self._model, "records_call", True)
        if self._unrecorded:   # not a step: a sampler's extra call, or a pipeline's unconditional CFG call
            self.cfg_layout = self._resolve_layout(max(self._step, 0))
            return
        self._step = self._calls
        self.cfg_layout = self._resolve_layout(self._step)   # this very call's layout
        self._calls += 1
        if self._step >= self.cfg.num_steps:
            raise RuntimeError(f"denoising step {self._step} is beyond CaptureConfig.num_steps={self.cfg.num_steps}; "
                               f"set num_steps to the sampler's step count")

    @staticmethod
    def _stasher(state: _LayerState, key: str):
        def hook(module, inputs, output):
            state.stash[key] = output
        return hook

    def _recorder(self, state: _LayerState):
        def on_call():
            if "k" not in state.stash:   # this key stream did not run in this call (e.g. an IP-Adapter at scale 0)
                state.stash.clear()
                return
            q, k, lse = state.stash.pop("q"), state.stash.pop("k"), state.stash.pop("lse", None)
            if self._unrecorded:   # a sampler's extra call that is not a step
                return
            if k.dim() == 4:   # IP-Adapter image tokens arrive as [B, images, tokens, C]
                k = k.flatten(1, 2)
            if state.spec.key_tokens == "after_query":   # reference attention: keys are [own tokens, reference]
                k = k[:, q.shape[1]:]
            elif state.spec.key_tokens is not None:       # (start, stop): e.g. one IP-Adapter image token
                k = k[:, state.spec.key_tokens[0]:state.spec.key_tokens[1]]
            if state.spec.query_frames is not None or state.spec.key_frames is not None:
                q, k = self._frame_tokens(state, q, k)
            self._record(state, q, k, lse)
        return on_call

    def _frame_tokens(self, state: _LayerState, q: torch.Tensor, k: torch.Tensor):
        """The queries and keys of ``LayerSpec.query_frames`` / ``key_frames`` in a video self-attention."""
        spec = state.spec
        if self._latent_hw is None or len(self._latent_hw) != 3:
            raise RuntimeError(f"layer {spec.name}: query_frames / key_frames need a video latent grid (frames, h, "
                               f"w); the step module's call gave {self._latent_hw}")
        frames = self._latent_hw[0]
        if spec.query_frames is not None:
            q = frame_tokens(q, frames, spec.query_frames, spec.name)
        if spec.key_frames is not None:
            k = frame_tokens(k, frames, spec.key_frames, spec.name)
        return q, k

    # ---------------------------------------------------------------- scoring
    def _conditional(self, x: torch.Tensor) -> torch.Tensor:
        if self._conditional_rows is not None:
            return self._conditional_rows(x)
        if self._adapter is not None:
            return x[self._adapter.conditional_slice(x.shape[0], self.cfg_layout)]
        return x[conditional_rows(x.shape[0], self.cfg_layout)]

    def _query_weight(self, grid: tuple[int, int], batch: int) -> torch.Tensor | None:
        if self._region_mask is None:
            return None
        if len(grid) != 2:
            raise ValueError(f"a region mask restricts image layers; this layer's query grid {grid} is a video's "
                             f"(frames, h, w)")
        if grid not in self._region_cache:
            mask = F.interpolate(self._region_mask.float(), size=grid, mode="nearest")
            if mask.shape[0] != batch:
                raise RuntimeError(f"region mask has batch {mask.shape[0]}, the conditional batch is {batch}")
            self._region_cache[grid] = mask.flatten(1)[:, None, :]  # [B, 1(head), Lq]
        return self._region_cache[grid]

    def _resolve_grids(self, state: _LayerState, lq: int, lk: int) -> None:
        spec = state.spec
        if spec.query_grid:
            state.query_grid = tuple(spec.query_grid)
        elif spec.query_frames is not None:   # a run of whole latent frames of the video token stream
            frames = len(range(*slice(*spec.query_frames).indices(self._latent_hw[0])))
            state.query_grid = (frames, *_grid_for(lq // frames, self._latent_hw[-2:], spec.name))
        else:
            state.query_grid = _grid_for(lq, self._latent_hw, spec.name)
        if spec.ref_grid == "query":
            state.ref_grid = state.query_grid
        elif spec.ref_grid == "frame":
            state.ref_grid = state.query_grid[-2:]
        elif spec.ref_grid == "row":
            state.ref_grid = (1, lk)
        elif spec.ref_grid is not None:
            state.ref_grid = tuple(spec.ref_grid)
        elif lk == 1:
            state.ref_grid = (1, 1)
        if state.ref_grid is not None and state.ref_grid[0] * state.ref_grid[1] != lk:
            raise RuntimeError(f"layer {spec.name}: reference grid {state.ref_grid} does not hold its {lk} key tokens")
        if len(state.query_grid) == 3 and spec.name in self.cfg.sram_layers:
            raise ValueError(f"CaptureConfig.sram_layers names {spec.name}, a video layer (query grid "
                             f"{state.query_grid}): SRAM points are (row, col) cells of an image layer; drop it")
        state.degenerate_g2r = lk == 1
        if "g2r" in self.cfg.directions and state.ref_grid is None:
            raise RuntimeError(f"layer {spec.name}: {lk} reference tokens but no reference grid; pass "
                               f"ref_grid=(rows, cols) (bare UNet) or set LayerSpec.ref_grid (adapter)")
        if state.degenerate_g2r and "g2r" in self.cfg.directions and not self._warned_degenerate:
            self._warned_degenerate = True
            log.warning("G2R is degenerate from layer %s on: one reference token, so the softmax over reference "
                        "tokens is identically 1; only R2G is recorded for single-token layers", spec.name)

    def _record(self, state: _LayerState, q: torch.Tensor, k: torch.Tensor, lse=None) -> None:
        attn = state.spec.module
        q, k = self._conditional(q), self._conditional(k)
        lse = None if lse is None else self._conditional(lse)
        if self._folded_frames:
            q, k, lse = unfold_frames(q, k, lse, self._folded_frames)
        batch, lq, width = q.shape
        lk = k.shape[1]
        heads = attn.heads
        head_dim = width // heads
        q, k = split_heads(attn, q, k, norms=not (state.spec.qk_normed or state.spec.qk_at_backend))
        if state.query_grid is None:
            state.heads = heads
            self._resolve_grids(state, lq, lk)
        group = self.cfg.time_group(self._step)
        scale = head_dim ** -0.5
        dirs = self.cfg.directions
        want_g2r = "g2r" in dirs and not state.degenerate_g2r
        want_sram = state.spec.name in self.cfg.sram_layers and not state.degenerate_g2r
        with torch.no_grad():
            if lk == 1:
                scores = {"r2g": r2g_single_token(q, k, scale)} if "r2g" in dirs else {}
            else:
                chunk = self.cfg.query_chunk(batch, heads, lq, lk, columns_first="r2g" in dirs)
                frames = self._frames(state)
                if frames > 1 and (want_g2r or want_sram):
                    lse = None   # a video's G2R per frame is summed from the logits (spatial_scores)
                scores = spatial_scores(q, k, scale, chunk=chunk, r2g="r2g" in dirs, g2r=want_g2r,
                                        query_weight=self._query_weight(state.query_grid, batch) if want_g2r else None,
                                        sram=want_sram, lse=lse, frames=frames, workspace=self._workspace)
                self._note_stats_path(state, KERNEL_LSE if lse is not None else RECOMPUTED)
            self._accumulate(state, scores, group)

    @staticmethod
    def _frames(state: _LayerState) -> int:
        return state.query_grid[0] if len(state.query_grid) == 3 else 1

    def _note_stats_path(self, state: _LayerState, path: str) -> None:
        if path not in self._stats_paths:
            log.info("%s: key-softmax statistics of %s from %s [%s]", type(self).__name__, state.spec.name,
                     "the attention kernel's own log-sum-exp" if path == KERNEL_LSE else "the recomputed logits", path)
        self._stats_paths.add(path)

    def _accumulate(self, state, scores, group) -> None:
        for kind, value in scores.items():
            accumulate(state.acc, kind, kind, value, group, self.cfg.time_groups, f"layer {state.spec.name}")

    # ---------------------------------------------------------------- results
    @property
    def steps_seen(self) -> int:
        return self._calls

    def layer_grids(self) -> dict[str, dict]:
        return {s.spec.name: {"query": s.query_grid, "ref": s.ref_grid} for s in self._states
                if s.query_grid is not None}

    def accumulator_bytes(self) -> int:
        return sum(a.numel() * a.element_size() for s in self._states for a in s.acc.values())

    def maps(self) -> AttributionMaps:
        """The recorded accumulators as AttributionMaps (raw, un-normalised; families on the common grids)."""
        seen = [s for s in self._states if s.query_grid is not None]
        if not seen:
            raise RuntimeError("no hooked layer was called: run the model inside the capture first")
        raw: dict[str, torch.Tensor] = {}
        layers = []
        for s in seen:
            qh, qw = s.query_grid[-2:]   # a video's G2R map is per frame: the mean over that frame's qh x qw cells
            rh, rw = s.ref_grid if s.ref_grid is not None else (1, s.acc.get("g2r", torch.empty(0, 0, 0, 1)).shape[-1])
            for key, acc in s.acc.items():
                if key == "r2g":
                    raw[f"{key}/{s.spec.name}"] = acc.reshape(*acc.shape[:3], *s.query_grid)
                elif key == "g2r":
                    raw[f"g2r/{s.spec.name}"] = acc.reshape(*acc.shape[:-1], rh, rw) / (qh * qw)
                else:
                    raw[f"sram/{s.spec.name}"] = acc
            layers.append({"name": s.spec.name, "group": s.spec.group, "heads": s.heads,
                           "query_grid": list(s.query_grid),
                           "ref_grid": list(s.ref_grid) if s.ref_grid else None, "degenerate_g2r": s.degenerate_g2r})
            if s.spec.relation is not None:
                layers[-1]["relation"] = s.spec.relation
        meta = {"model": self.model_name, "num_steps": self.cfg.num_steps, "time_groups": self.cfg.time_groups,
                "steps_seen": self._calls, "cfg_layout": self.cfg_layout, "directions": list(self.cfg.directions),
                "layers": layers, "r2g_grid": self.cfg.r2g_grid, "g2r_grid": self.cfg.g2r_grid,
                "family_layers": {d: {f: list(v) for f, v in fams.items()} for d, fams in
                                  dict(self.cfg.family_layers).items()}}
        if self.stats_path is not None:
            meta["stats_path"] = self.stats_path
        return AttributionMaps(raw, meta)
