"""What a capture records: directions, layers, time groups, SRAM layers and the CFG batch layout."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from i2am.engine.cfg_rows import LAYOUT_CHUNKS

DIRECTIONS = ("r2g", "g2r")
CFG_LAYOUTS = (*LAYOUT_CHUNKS, "auto")   # "auto": the layout of each adapter.denoise call
DEFAULT_TIME_GROUPS = 5   # the paper's TLAM groups of 50 steps


@dataclass
class CaptureConfig:
    """Configuration of one ``AttributionCapture``.

    num_steps: denoising steps of the run; step s falls into time group ``s * time_groups // num_steps``.
    time_groups: number of TLAM groups (5 for the paper's 50 DDIM steps: steps 0-9, 10-19, ...); None (the default)
        is ``min(5, num_steps)`` and sets ``auto_time_groups``, so a run's plan may choose the groups for its own step
        count, where an explicit number above the steps is an error.
    directions: any of "r2g" (softmax over generated positions) and "g2r" (softmax over reference tokens). DAAM's
        word heat maps are ``AttributionMaps.daam_word_maps`` of an SRAM layer (their sum over tokens is constant).
    layers: "all" (every hookable cross-attention outside the mid block, the official choice), "all+mid",
        "group:<name>[,<name>]" (e.g. "group:warp"), or a list of layer names.
    sram_layers: layer names whose full [Lq, Lk] G2R maps (heads averaged, summed over steps) are kept for
        specific-reference (SRAM) queries. Costs Lq*Lk floats per sample and layer.
    cfg_layout: which chunk of the batch is conditional: "none" (no CFG), "uncond_cond" (PBE, PASD: index 1),
        "cond_uncond" (the custom model: index 0), "auto" (default: the layout of each ``adapter.denoise`` call,
        from the guidance it is given; "none" for a bare UNet), or one layout per step (a run whose guidance
        changes mid-run; ``i2am.sampling.plan.SamplingPlan.capture_config`` writes it).
    chunk_budget: the most logits (batch x heads x queries x tokens) materialised at once for spatial tokens; the
        query axis is split into chunks that fit (64 Mi floats = 256 MiB fp32 by default). A capture holds one
        buffer as large as its largest block while it is entered.
    one_pass_budget: the most logits of a block formed whole, all its queries at once, when a reading needs every
        query's column sums before any row's score (R2G, the softmax over queries, with the I2AM normalisation):
        over several chunks each such block is formed twice, once for the column sums and once for the scores
        (512 Mi floats = 2 GiB fp32 by default, which holds FLUX.1 Kontext's 1024x1024 generated x reference block
        of 24 heads; set it to ``chunk_budget`` to keep every block within that).
    kernel_stats: the key softmaxes of the scores (UNet cross-attention, both normalisations of joint attention and
        its routes) are normalised by each query's log-sum-exp: True (default) takes it from the attention kernel's
        own statistics where the backend exposes them (aten's flash / memory-efficient SDPA ops), False forces
        softmaxes of recomputed logits; the maps' ``stats_path`` says which ran.
    r2g_grid / g2r_grid: common grids for the families; None = the largest query grid (R2G) / reference grid (G2R).
    family_layers: optional per-direction, per-family layer subsets, e.g. the official StableVITON G2R uses
        {"g2r": {"ulam": [warp4], "hlam": [warp4], "tlam": [warp3, warp4, warp5]}}.
    """

    num_steps: int = 50
    time_groups: int | None = None
    directions: Sequence[str] = ("r2g", "g2r")
    layers: str | Sequence[str] = "all"
    sram_layers: Sequence[str] = ()
    cfg_layout: str | Sequence[str] = "auto"
    chunk_budget: int = 2**26
    one_pass_budget: int = 2**29
    kernel_stats: bool = True
    r2g_grid: tuple[int, int] | None = None
    g2r_grid: tuple[int, int] | None = None
    family_layers: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    auto_time_groups: bool = field(init=False, default=False)

    def __post_init__(self):
        self.auto_time_groups = self.time_groups is None
        if self.auto_time_groups:
            self.time_groups = min(DEFAULT_TIME_GROUPS, self.num_steps)
        self.directions = tuple(self.directions)
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad:
            raise ValueError(f"CaptureConfig.directions: unknown {bad}; choose from {DIRECTIONS}")
        if not isinstance(self.cfg_layout, str):
            self.cfg_layout = tuple(self.cfg_layout)
            if len(self.cfg_layout) != self.num_steps or not set(self.cfg_layout) <= set(CFG_LAYOUTS[:3]):
                raise ValueError(f"CaptureConfig.cfg_layout: a per-step list needs num_steps={self.num_steps} "
                                 f"entries from {CFG_LAYOUTS[:3]}, got {self.cfg_layout}")
        elif self.cfg_layout not in CFG_LAYOUTS:
            raise ValueError(f"CaptureConfig.cfg_layout={self.cfg_layout!r}; choose from {CFG_LAYOUTS}")
        if self.num_steps < 1 or not 1 <= self.time_groups <= self.num_steps:
            raise ValueError(f"CaptureConfig: need num_steps >= 1 and 1 <= time_groups <= num_steps, "
                             f"got num_steps={self.num_steps}, time_groups={self.time_groups}")
        if self.chunk_budget < 1:
            raise ValueError(f"CaptureConfig.chunk_budget must be >= 1, got {self.chunk_budget}")
        if self.one_pass_budget < 1:
            raise ValueError(f"CaptureConfig.one_pass_budget must be >= 1, got {self.one_pass_budget}")
        self.sram_layers = tuple(self.sram_layers)
        if not isinstance(self.layers, str):
            self.layers = tuple(self.layers)
        for key in ("r2g_grid", "g2r_grid"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, tuple(int(v) for v in value))

    def layout_at(self, step: int) -> str:
        """The configured CFG layout of one step ("auto" = the one of the call in progress)."""
        return self.cfg_layout if isinstance(self.cfg_layout, str) else self.cfg_layout[step]

    def query_chunk(self, batch: int, heads: int, queries: int, keys: int, *, columns_first: bool = False) -> int:
        """Queries per logits block of a [batch, heads, queries, keys] score: as many as ``chunk_budget`` logits
        hold, or all of them when ``columns_first`` (the reading needs every query's column sums first) and the
        whole block fits ``one_pass_budget``."""
        per_query = batch * heads * max(keys, 1)
        if columns_first and per_query * queries <= self.one_pass_budget:
            return max(queries, 1)
        return max(1, self.chunk_budget // per_query)

    def time_group(self, step: int) -> int:
        return step * self.time_groups // self.num_steps
