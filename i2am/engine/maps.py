"""AttributionMaps: the raw per-layer accumulators of a capture and the I2AM map families derived from them.

Families (docs/method.md §3.1-3.2, Appendix A step 4), per direction, on a common grid:
  ULAM [B, h, w]   mean over (layers × heads) of Resize(Σ_steps)
  TLAM [B, G, h, w] the same per time group
  HLAM [B, N, h, w] per head, mean over layers
  LLAM [B, L, h, w] per layer, mean over heads
Resize = bicubic (align_corners=False, no antialias) to the common grid, then clamp(min=0).
R2G maps live on the generated grid, G2R maps on the reference grid. SRAMs are rows of a layer's G2R matrix.

Video (docs/video_maps.md). A layer whose queries lie on a (frame, h, w) latent grid keeps a frame axis right before
(h, w) in every map: its raw R2G sums are [B, G, N, F, h, w], its G2R sums [B, G, N, F, hr, wr] (one G2R map per
generated frame), and every family gains F at dim -3 (ULAM [B, F, h, w], TLAM [B, G, F, h, w], ...). Resizes act on
(h, w) frame by frame; the frame axis is never resized. ``frame_mass`` is the frame-level family: the per-step mass of
each generated frame in a distribution (R2G only).

Units (docs/maps.md). At one step and head, a layer's R2G map is a probability distribution over its generated grid
(the softmax over generated positions, averaged over reference tokens) and its G2R map one over its reference grid
(the softmax over reference tokens, averaged over generated positions): each sums to 1 on the layer's own grid.
- The families (``ulam``, ``tlam``, ``hlam``, ``llam``) are SUMS over steps, resized by value: a layer's map sums to
  steps x (common grid cells / layer grid cells), e.g. 4 or 16 for LLAM layers at different grids. They are kept as
  they are (the paper's metrics and the official reproduction read them).
- ``mean(family)`` is the per-step mean: the family divided by its step count (per time group for TLAM).
- ``distribution(family)`` is the per-step mean with mass-preserving resizes: every layer's map keeps the mass it had
  on its own grid, so each map sums to 1 on the common grid and layers at different grids compare directly.
- ``AttributionMaps.sram`` and ``daam_word_maps`` take ``reduce="sum"`` (over steps, the default) or ``"mean"``
  (per step: a probability in [0, 1], e.g. the DiT ``share`` normalisation's mass).
"""
from __future__ import annotations

import json
import warnings
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

FAMILIES = ("ulam", "tlam", "hlam", "llam")


def resize_clamp(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of the last two dims (align_corners=False), then clamp at 0; same size is the identity."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x.clamp(min=0)
    return bicubic(x, size).clamp(min=0)


def resize_mass(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``resize_clamp`` rescaled so that every map keeps its mass (its sum over the last two dims): a distribution on
    one grid stays a distribution on the other. x must be non-negative (attention scores are)."""
    resized = resize_clamp(x, size)
    mass = x.sum((-2, -1), keepdim=True)
    return resized * (mass / resized.sum((-2, -1), keepdim=True).clamp(min=torch.finfo(resized.dtype).tiny))


def steps_per_group(meta: dict) -> list[int]:
    """How many recorded steps fell into each time group (step s is in group s * groups // num_steps)."""
    num_steps, groups = int(meta["num_steps"]), int(meta["time_groups"])
    seen = int(meta.get("steps_seen") or num_steps)
    counts = [0] * groups
    for step in range(min(seen, num_steps)):
        counts[step * groups // num_steps] += 1
    return counts


def bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of the last two dims as the official code does it: align_corners=False, no antialias, fp32."""
    lead = x.shape[:-2]
    y = F.interpolate(x.reshape(-1, 1, *x.shape[-2:]).float(), size=tuple(size), mode="bicubic", align_corners=False)
    return y.reshape(*lead, *size)


def frames_of(layer_maps, direction: str) -> int | None:
    """The frame count of raw layer sums ([B, G, N, h, w] images, [B, G, N, F, h, w] video); None for images.
    Layers of one direction must agree (the frame axis is never resized)."""
    counts = {m.shape[3] for m in layer_maps if m.dim() == 6}
    if not counts:
        return None
    if len(counts) > 1:
        raise ValueError(f"{direction}: layers with different frame counts {sorted(counts)}; the frame axis is not "
                         f"resized, capture layers of one temporal resolution together")
    return counts.pop()


class DirectionMaps:
    """The map families of one direction ("r2g" or "g2r") over a set of layers (units: module docstring)."""

    def __init__(self, direction: str, layers: dict[str, torch.Tensor], grid: tuple[int, int] | None,
                 family_layers: dict | None = None, degenerate: str | None = None,
                 group_steps: list[int] | None = None):
        self.direction = direction
        self.group_steps = group_steps            # recorded steps per time group (None: unknown)
        self.layers = layers                     # name -> [B, G, N, h, w] (video: [B, G, N, F, h, w]) sums over steps
        self.grid = tuple(grid) if grid else None   # None: per family, the largest grid of its layers
        self.family_layers = family_layers or {}
        self.degenerate = degenerate             # a reason string when this direction carries no information

    @property
    def available(self) -> bool:
        return bool(self.layers) and self.degenerate is None

    @property
    def names(self) -> list[str]:
        return list(self.layers)

    def subset(self, names) -> DirectionMaps:
        missing = [n for n in names if n not in self.layers]
        if missing:
            raise KeyError(f"{self.direction}: no captured layer {missing}; captured: {self.names}")
        return DirectionMaps(self.direction, {n: self.layers[n] for n in names}, self.grid, {}, self.degenerate,
                             self.group_steps)

    def family_grid(self, family: str) -> tuple[int, int]:
        """The common grid of a family: the configured one, else the largest grid among the family's layers."""
        if self.grid is not None:
            return self.grid
        names = self.family_layers.get(family) or self.names
        return max((tuple(self.layers[n].shape[-2:]) for n in names), key=lambda hw: hw[0] * hw[1])

    def _resized(self, family: str, per_group: bool, resize=resize_clamp) -> list[torch.Tensor] | None:
        """Per layer of the family, the sum over steps (or per group) resized to the common grid and clamped:
        a list of [B, N, h, w] (or [B, N, G, h, w])."""
        if not self.available:
            warnings.warn(f"{self.direction} maps are not available: {self.degenerate or 'no layer captured'}",
                          stacklevel=3)
            return None
        names = self.family_layers.get(family) or self.names
        grid = self.family_grid(family)
        if per_group:
            return [resize(self.layers[n].transpose(1, 2), grid) for n in names]
        return [resize(self.layers[n].sum(1), grid) for n in names]

    def _family(self, family: str, resize=resize_clamp) -> torch.Tensor | None:
        if family not in FAMILIES:
            raise ValueError(f"unknown map family {family!r}; choose from {FAMILIES}")
        maps = self._resized(family, per_group=family == "tlam", resize=resize)
        if maps is None:
            return None
        if family in ("ulam", "tlam"):
            return torch.cat(maps, dim=1).mean(1)
        if family == "llam":
            return torch.stack([m.mean(1) for m in maps], dim=1)
        heads = {m.shape[1] for m in maps}
        if len(heads) > 1:
            raise ValueError(f"{self.direction} HLAM needs the same head count in every layer, got {sorted(heads)}")
        return torch.stack(maps, dim=1).mean(1)

    @cached_property
    def ulam(self) -> torch.Tensor | None:
        """[B, h, w] sum over steps, mean over layers and heads, resized by value to the common grid."""
        return self._family("ulam")

    @cached_property
    def tlam(self) -> torch.Tensor | None:
        """[B, G, h, w] as ``ulam``, one map per time group (the sum over that group's steps)."""
        return self._family("tlam")

    @cached_property
    def hlam(self) -> torch.Tensor | None:
        """[B, N, h, w] as ``ulam``, one map per head (mean over layers)."""
        return self._family("hlam")

    @cached_property
    def llam(self) -> torch.Tensor | None:
        """[B, L, h, w] as ``ulam``, one map per layer (mean over heads); layers at smaller grids sum to more."""
        return self._family("llam")

    def _per_step(self, family: str, maps: torch.Tensor | None) -> torch.Tensor | None:
        if maps is None:
            return None
        if self.group_steps is None:
            raise ValueError(f"{self.direction}: the step count is unknown (maps without num_steps metadata)")
        counts = torch.tensor(self.group_steps, dtype=maps.dtype, device=maps.device).clamp(min=1)
        if family == "tlam":   # [B, G, (F,) h, w]: each group by its own steps
            return maps / counts.reshape(-1, *[1] * (maps.dim() - 2))
        return maps / counts.sum()

    def mean(self, family: str) -> torch.Tensor | None:
        """The per-step mean of a family: ``getattr(self, family)`` divided by the recorded steps (TLAM: by the steps
        of each time group). Same shape and value-resize as the sum; an unresized layer map sums to 1."""
        return self._per_step(family, getattr(self, family))

    @property
    def frames(self) -> int | None:
        """Latent frames of a video direction (the dim -3 of every family), None for images."""
        return frames_of(self.layers.values(), self.direction)

    def frame_mass(self, family: str = "ulam") -> torch.Tensor | None:
        """The frame-level family: ``distribution(family)`` summed over (h, w), e.g. [B, F] for ULAM, [B, G, F] for
        TLAM. R2G: per step, which generated frames the reference flows into (sums to 1 over the frames)."""
        if self.frames is None:
            raise ValueError(f"{self.direction}: frame_mass needs video maps (a frame axis); these are image maps")
        if self.direction != "r2g":
            raise ValueError(f"{self.direction}: every generated frame's G2R map is a distribution over the reference "
                             f"(mass 1 per frame by construction); the frame-level family is defined for R2G")
        maps = self.distribution(family)
        return None if maps is None else maps.sum((-2, -1))

    def distribution(self, family: str) -> torch.Tensor | None:
        """The per-step mean of a family with mass-preserving resizes (``resize_mass``): each map is a probability
        distribution on the common grid (sums to 1), whatever the grid its layers had; compare LLAM layers here."""
        return self._per_step(family, self._family(family, resize=resize_mass))


class AttributionMaps:
    """Raw accumulators (keys "r2g/<layer>", "g2r/<layer>", "sram/<layer>") plus metadata (units: module
    docstring)."""

    def __init__(self, raw: dict[str, torch.Tensor], meta: dict):
        self.raw = raw
        self.meta = meta
        self._layer_meta = {m["name"]: m for m in meta["layers"]}

    # ------------------------------------------------------------ directions
    def _direction(self, direction: str) -> DirectionMaps:
        prefix = direction + "/"
        layers = {k[len(prefix):]: v for k, v in self.raw.items() if k.startswith(prefix)}
        degenerate = None
        if direction == "g2r" and not layers:
            dead = [m["name"] for m in self.meta["layers"] if m.get("degenerate_g2r")]
            if dead:
                degenerate = (f"every captured layer has a single reference token ({len(dead)} layers); the softmax "
                              f"over one key is identically 1, so G2R carries no information")
        grid_key = {"r2g": "r2g_grid", "g2r": "g2r_grid"}.get(direction)
        grid = self.meta.get(grid_key) if grid_key else None
        fams = {family: self._expand(names, layers) for family, names in
                self.meta.get("family_layers", {}).get(direction, {}).items()}
        return DirectionMaps(direction, layers, grid, fams, degenerate, self.group_steps)

    @property
    def group_steps(self) -> list[int] | None:
        """Recorded steps per time group (None for metadata without a step count)."""
        return steps_per_group(self.meta) if "num_steps" in self.meta and "time_groups" in self.meta else None

    @property
    def steps(self) -> int | None:
        """Recorded denoising steps: what the sums run over (``mean`` views divide by it)."""
        return None if self.group_steps is None else sum(self.group_steps)

    def _expand(self, names, captured: dict) -> list[str]:
        """Layer names of a family; "group:<g>" stands for every captured layer of group g, in capture order."""
        out = []
        for name in names:
            if name.startswith("group:"):
                group = name[len("group:"):]
                out += [m["name"] for m in self.meta["layers"] if m["group"] == group and m["name"] in captured]
            elif name in captured:
                out.append(name)
            else:
                raise KeyError(f"family layer {name!r} was not captured in this direction; captured: {list(captured)}")
        return out

    @cached_property
    def r2g(self) -> DirectionMaps:
        return self._direction("r2g")

    @cached_property
    def g2r(self) -> DirectionMaps:
        return self._direction("g2r")

    @property
    def frames(self) -> int | None:
        """Latent frames of video maps (query grids [F, h, w]), None for image maps."""
        grids = [m["query_grid"] for m in self.meta["layers"] if m.get("query_grid")]
        counts = {g[0] for g in grids if len(g) == 3}
        return counts.pop() if len(counts) == 1 else None

    @property
    def g2r_on_tokens(self) -> bool:
        """Whether the G2R maps run over a sequence of tokens (text, IP-Adapter: a reference grid of one row of
        several tokens) rather than over a reference image's grid: such a map is not drawn on the reference image
        and IMACS_r (the garment-mask score) is not defined for it."""
        grids = [self._layer_meta[n].get("ref_grid") for n in self.g2r.layers if n in self._layer_meta]
        return bool(grids) and all(g is not None and g[0] == 1 and g[1] > 1 for g in grids)

    # ------------------------------------------------------------ relations
    @property
    def relations(self) -> list[str]:
        """Names of the conditionings the captured layers attend to (``i2am.trace``: "text", "image:ip_adapter",
        "image:reference", ...), in capture order; empty for captures of a single, unnamed relation."""
        return list(dict.fromkeys(m["relation"] for m in self.meta["layers"] if m.get("relation")))

    def relation(self, name: str, group: str | None = None) -> AttributionMaps:
        """The maps of one relation (optionally one layer group, e.g. "controlnet"), with its own families."""
        layers = [m for m in self.meta["layers"] if m.get("relation") == name and group in (None, m["group"])]
        if not layers:
            raise KeyError(f"no captured layer of relation {name!r}" + (f" in group {group!r}" if group else "")
                           + f"; relations captured: {self.relations}")
        names = {m["name"] for m in layers}
        raw = {k: v for k, v in self.raw.items() if k.split("/", 1)[1] in names}
        return AttributionMaps(raw, {**self.meta, "layers": layers, "family_layers": {}})

    # ------------------------------------------------------------ batch
    @property
    def batch_size(self) -> int:
        return next(iter(self.raw.values())).shape[0]

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index) -> AttributionMaps:
        """One sample (int) or a sub-batch (slice / index list), keeping the batch axis."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return AttributionMaps({k: v[index] for k, v in self.raw.items()}, self.meta)

    @staticmethod
    def concat(items: list[AttributionMaps]) -> AttributionMaps:
        keys = items[0].raw.keys()
        return AttributionMaps({k: torch.cat([m.raw[k] for m in items]) for k in keys}, items[0].meta)

    # ------------------------------------------------------------ SRAM
    def layer_meta(self, layer: str) -> dict:
        if layer not in self._layer_meta:
            raise KeyError(f"no captured layer {layer!r}; captured: {list(self._layer_meta)}")
        return self._layer_meta[layer]

    def sram_points(self, layer: str, mask: torch.Tensor) -> list[torch.Tensor]:
        """Per sample, the (row, col) cells of the layer's query grid inside ``mask``, in row-major order.

        mask: [B or 1, 1, H, W] or [H, W]; nearest-resized to the query grid (official: cell (i, j) reads the pixel at
        (i·H/h, j·W/w)); cells whose value is non-zero are selected.
        """
        qh, qw = self.layer_meta(layer)["query_grid"]
        m = mask.float()
        while m.dim() < 4:
            m = m.unsqueeze(0)
        cells = F.interpolate(m, size=(qh, qw), mode="nearest")[:, 0] != 0
        if cells.shape[0] == 1 and self.batch_size > 1:
            cells = cells.expand(self.batch_size, -1, -1)
        return [torch.nonzero(c, as_tuple=False) for c in cells]

    def sram(self, layer: str, points=None, mask: torch.Tensor | None = None, reduce: str = "sum") -> torch.Tensor:
        """Specific-reference maps of chosen generated cells: [B, P, hr, wr], heads averaged; ``reduce="sum"``: summed
        over steps (each map sums to the step count), ``"mean"``: per step (each map a distribution over the
        reference grid, values in [0, 1]; under the DiT ``share`` normalisation it sums to the cell's share)."""
        key = f"sram/{layer}"
        if key not in self.raw:
            raise KeyError(f"no SRAM accumulator for layer {layer!r}: add it to CaptureConfig.sram_layers "
                           f"(SRAM layers captured: {[k[5:] for k in self.raw if k.startswith('sram/')]})")
        meta = self.layer_meta(layer)
        qh, qw = meta["query_grid"]
        rh, rw = meta["ref_grid"]
        full = self.raw[key]                                      # [B, Lq, Lk]
        if (points is None) == (mask is None):
            raise ValueError("sram() takes exactly one of points=[(row, col), ...] or mask=...")
        if mask is not None:
            per_sample = self.sram_points(layer, mask)
            counts = {len(p) for p in per_sample}
            if len(counts) > 1:
                raise ValueError(f"the mask selects different numbers of cells per sample {sorted(counts)}; "
                                 f"query one sample at a time: maps[i].sram(layer, mask=mask[i:i+1])")
            idx = torch.stack([p[:, 0] * qw + p[:, 1] for p in per_sample]).to(full.device)   # [B, P]
        else:
            pts = torch.as_tensor(points, dtype=torch.long).reshape(-1, 2)
            if (pts[:, 0] < 0).any() or (pts[:, 0] >= qh).any() or (pts[:, 1] < 0).any() or (pts[:, 1] >= qw).any():
                raise IndexError(f"SRAM points {pts.tolist()} outside the {qh}x{qw} query grid of {layer}")
            idx = (pts[:, 0] * qw + pts[:, 1]).to(full.device).expand(full.shape[0], -1)
        rows = torch.gather(full, 1, idx[..., None].expand(-1, -1, full.shape[-1]))
        return self._reduced(rows.reshape(full.shape[0], -1, rh, rw), reduce)

    def _reduced(self, summed: torch.Tensor, reduce: str) -> torch.Tensor:
        if reduce == "sum":
            return summed
        if reduce == "mean":
            if not self.steps:
                raise ValueError("reduce='mean' needs the step count (num_steps, time_groups) in the maps' metadata")
            return summed / self.steps
        raise ValueError(f"reduce={reduce!r}: choose 'sum' (over steps) or 'mean' (per step)")

    def daam_word_maps(self, layer: str, reduce: str = "sum") -> torch.Tensor:
        """DAAM's word heat maps of a layer captured with SRAM (``CaptureConfig.sram_layers``): [B, T, h, w], per
        conditioning token (a word for a text relation) the softmax over tokens at each generated position, heads
        averaged; the columns of the layer's SRAM matrix on the generated grid. Works on UNet (``AttributionCapture``)
        and DiT (``JointAttentionCapture``) traces alike. ``reduce`` as in ``sram``: per step, the maps of all tokens
        add up to 1 at every position (so their sum is constant: only the per-token maps carry information)."""
        meta = self.layer_meta(layer)
        key = f"sram/{layer}"
        if key not in self.raw:
            raise KeyError(f"no SRAM accumulator for {layer!r}: add it to CaptureConfig.sram_layers "
                           f"(capture.sram_layers on the CLI); SRAM layers captured: "
                           f"{[k[5:] for k in self.raw if k.startswith('sram/')]}")
        qh, qw = meta["query_grid"]
        full = self.raw[key]                                   # [B, Lq, T]
        return self._reduced(full.transpose(1, 2).reshape(full.shape[0], full.shape[2], qh, qw), reduce)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.raw.items()}
        save_file(tensors, str(path), metadata={"i2am": json.dumps(self.meta), "format": "i2am-maps-v1"})
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> AttributionMaps:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no attribution maps at {path}")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "i2am" not in meta:
            raise ValueError(f"{path} is a safetensors file without i2am metadata (not written by "
                             f"AttributionMaps.save)")
        return cls(load_file(str(path), device=str(device)), json.loads(meta["i2am"]))
