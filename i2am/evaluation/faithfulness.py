"""Faithfulness of the maps (docs/faithfulness.md): does the output depend on what a map points at?

- ``g2r_curves``: deletion / insertion curves (Petsiuk et al. 2018). Rank the reference tokens by a G2R map, remove
  the top fraction f of them in every layer that reads the reference (``i2am.engine.knockout``), regenerate with
  the same noise and measure the change of the output on a query region, in latents and pixels; the same for the
  inverse order, random orders (10 by default) and trivial orders computed from the inputs alone
  (``i2am.measures.trivial_orders``: the reference's foreground mask, a centre prior, smoothed random blobs), which
  the map must beat before it can claim anything. Removal replaces the removed tokens with the model's unconditional
  context where it has one per reference token (in distribution; ``resolve_removal``), else knocks them out (-inf
  logits, also on request), and the curves are normalised by the largest change
  seen (bounded in [0, 1]; ``out_of_range`` flags a curve that moved the output more than removing everything).
  Mode ``full`` runs the whole sampler; mode ``proxy`` is teacher-forced: it
  takes the unperturbed run's own trajectory at a few fixed steps and measures the change of the one-step x0
  prediction there (cheap, and a proxy only).
- ``r2g_counterfactuals``: swap the reference (for another sample's, ``pick_donor``, and for the null reference:
  the unconditional context, or every reference token knocked out, ``null_reference``; the sample's own reference
  rotated by 180° as an option), keep the noise, and
  compare where the output changes with the R2G map: Spearman and top-k overlap inside the generated region, next to
  the mask-only baseline (a map uniform inside the region).

The model arrives duck-typed (the adapter and sampler of a run): ``adapter.prepare(sample)`` -> inputs (a dataclass
with ``context``, ``uncond_context`` and batch-first tensors), ``adapter.denoise(x, t, inputs, guidance=)``,
``adapter.decode_latents``, ``adapter.step_module``; ``adapter.run_loop(inputs, sampler, callback=)`` -> latents,
with the noise fixed by the sample id, and ``sampler.settings(adapter)["guidance"]``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from i2am.engine.hooks import Hooks
from i2am.engine.knockout import TokenKnockout, rank_keep_mask
from i2am.evaluation.rerun import regenerate, require_sampler_loop
from i2am.measures.curves import normalised_auc, retained, spearman, topk_overlap
from i2am.measures.trivial_orders import TRIVIAL_ORDERS, trivial_orders

FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
REMOVALS = ("auto", "replace", "knockout")
SPACES = ("latent", "pixel")
MODES = ("full", "proxy")


def repeat_inputs(inputs, n: int):
    """A batch-1 inputs dataclass repeated n times along the batch (lists and dicts of tensors included)."""
    def rep(value):
        if torch.is_tensor(value):
            return value.repeat(n, *([1] * (value.dim() - 1)))
        if isinstance(value, list):
            return value * n
        if isinstance(value, dict):
            return {k: rep(v) for k, v in value.items()}
        return value
    return dataclasses.replace(inputs, **{f.name: rep(getattr(inputs, f.name)) for f in dataclasses.fields(inputs)})


def region_weight(mask: torch.Tensor | None, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """[1, 1, H, W] region mask (or None = everywhere) as area-resized weights [1, 1, h, w] in [0, 1]."""
    if mask is None:
        return torch.ones(1, 1, *size, dtype=torch.float32, device=like.device)
    mask = mask.float().to(like.device).reshape(1, 1, *mask.shape[-2:])
    return F.interpolate(mask, size=size, mode="area") if tuple(mask.shape[-2:]) != tuple(size) else mask


def region_mse(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared difference over channels and the weighted region: [N, C, h, w] x2 -> [N]; a video
    [N, C, F, h, w] has the region in every frame (the mean over frames)."""
    sq = (a.float() - b.float()).pow(2).mean(1, keepdim=True)
    per_frame = (sq * weight).sum((-2, -1)) / weight.sum().clamp_min(1e-12)
    return per_frame.flatten(1).mean(1)


def sample_digest(sample_id: str) -> int:
    """A stable 31-bit number of a sample id (Python's ``hash`` of a str changes between processes)."""
    return sum(ord(c) * 31 ** i for i, c in enumerate(str(sample_id))) % (2 ** 31)


def order_scores(scores: torch.Tensor, random_orders: int, seed: int, sample_id: str,
                 trivial: Sequence[str] = TRIVIAL_ORDERS, foreground: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """The ranking scores of each order on the map's grid: the map, its inverse, ``random_orders`` random
    permutations and the ``trivial`` orders (``foreground``: the reference's object mask, without which that order is
    skipped), all seeded by (seed, sample id, k), so a resumed run draws the same."""
    out = {"attribution": scores.float(), "inverse": -scores.float()}
    digest = sample_digest(sample_id)
    for k in range(random_orders):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + digest * 101 + k)
        out[f"random{k}"] = torch.randperm(scores[0].numel(), generator=g).float().reshape(scores.shape)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + digest * 101 + 999_983)
    out |= {name: order.float() for name, order in
            trivial_orders(tuple(scores.shape[-2:]), g, foreground, trivial).items()}
    return out


class _CallCounter:
    """Counts step-module calls and the batch rows they carried (the cost figures)."""

    def __init__(self, module):
        self.calls = self.rows = 0
        self._hooks = Hooks(type(self).__name__)
        self._hooks.hook(module, self._hook, pre=True, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self.calls += 1
        self.rows += int(sample.shape[0]) if sample is not None else 0

    def close(self):
        self._hooks.restore()


class _Runs:
    """Runs the model for rows of token removals: each row is (scores, fraction, keep_top) or None (keep all)."""

    def __init__(self, adapter, sampler, inputs, knockout: TokenKnockout | None, batch_size: int):
        self.adapter, self.sampler, self.inputs, self.knockout = adapter, sampler, inputs, knockout
        self.batch_size = max(1, int(batch_size))
        self.guidance = sampler.settings(adapter)["guidance"]

    def _set(self, rows):
        if self.knockout is None:
            return
        if all(r is None for r in rows):
            self.knockout.clear()
            return

        def keep(grid):
            masks = [torch.ones(1, grid[0] * grid[1], dtype=torch.bool) if r is None
                     else rank_keep_mask(r[0], grid, r[1], keep_top=r[2]) for r in rows]
            return torch.cat(masks)
        self.knockout.set_keep(keep)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return (self.adapter.decode_latents(latents).float() + 1) / 2

    def full(self, rows, inputs=None, callback=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and [0, 1] images of whole sampler runs, one per row (same noise for all)."""
        inputs = inputs or self.inputs
        latents = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            self._set(chunk)
            batch = repeat_inputs(inputs, len(chunk))
            latents.append(regenerate(self.adapter, self.sampler, batch, callback=callback))
        latents = torch.cat(latents)
        return latents, self.decode(latents)

    def proxy(self, rows, trajectory: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step x0 predictions at the recorded steps of the unperturbed trajectory: [S, N, ...] each."""
        latents = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            self._set(chunk)
            inputs = repeat_inputs(self.inputs, len(chunk))
            per_step = []
            for point in trajectory:
                x = point["x"].repeat(len(chunk), *[1] * (point["x"].dim() - 1))   # an image's or a video's
                per_step.append(self.adapter.predict_x0(x, point["t"], inputs, guidance=self.guidance,
                                                        alpha_cumprod=point["alpha_cumprod"]))
            latents.append(torch.stack(per_step))
        latents = torch.cat(latents, dim=1)
        images = torch.stack([self.decode(step) for step in latents])
        return latents, images


def _proxy_indices(num_steps: int, proxy_steps: Sequence[float]) -> list[int]:
    return sorted({min(num_steps - 1, max(0, round(p * (num_steps - 1)))) for p in proxy_steps})


def resolve_removal(adapter, inputs, removal: str) -> str:
    """``auto``: ``replace`` (the removed tokens become the model's unconditional context's, in distribution) where
    that context holds one token per reference cell of every spatial layer, else ``knockout`` (-inf logits: e.g.
    StableVITON or PASD, whose unconditional context is a text prompt, or a diffusion transformer, whose knockout acts
    inside joint attention: ``joint_token_knockout``)."""
    if removal not in REMOVALS:
        raise ValueError(f"faithfulness removal={removal!r}: choose from {list(REMOVALS)}")
    if removal != "auto":
        return removal
    uncond = getattr(inputs, "uncond_context", None)
    grids = [s.ref_grid for s in adapter.attribution_layers() if s.ref_grid is not None]
    fits = (torch.is_tensor(uncond) and uncond.dim() == 3 and bool(grids)
            and not adapter.joint_token_knockout
            and all(isinstance(g, (tuple, list)) and all(isinstance(v, int) for v in g)
                    and g[0] * g[1] == uncond.shape[1] for g in grids))
    return "replace" if fits else "knockout"


@torch.no_grad()
def knockout_for(adapter, **options):
    """The adapter's token knockout (``adapter.token_knockout``: ``TokenKnockout`` over its cross-attention layers,
    or e.g. a diffusion transformer's inside its joint attention)."""
    return adapter.token_knockout(**options)


def g2r_curves(adapter, sampler, sample: Mapping, scores: torch.Tensor, *, sample_id: str,
               query_mask: torch.Tensor | None = None, fractions: Sequence[float] = FRACTIONS,
               random_orders: int = 10, seed: int = 0, modes: Sequence[str] = ("full",), removal: str = "auto",
               proxy_steps: Sequence[float] = (0.25, 0.5, 0.75), batch_size: int = 8, knockout_layers=None,
               trivial: Sequence[str] = TRIVIAL_ORDERS, foreground: torch.Tensor | None = None) -> dict:
    """Deletion and insertion curves of one sample for the attribution, inverse and random orders.

    scores: [1, h, w] G2R map (any grid: it is resized to each layer's reference grid). query_mask: [1, 1, H, W],
    1 where the output change is measured (None = the whole image). foreground: [.., H, W] the reference's object
    mask (the ``foreground`` trivial order). Every order's rows share batched model calls. Returns ``{"fractions",
    "orders", "curves":
    {mode: {space: {"deletion"|"insertion": {order: [F] change}, "all_removed": change}}}, "cost": {mode:
    {"unet_calls", "unet_rows"}}, "removal"}``; changes are mean squared differences to the unperturbed output.
    """
    require_sampler_loop(adapter, sampler, "G2R deletion / insertion curves")
    fractions = [float(f) for f in fractions]
    if fractions[0] != 0.0 or fractions[-1] != 1.0 or len(fractions) < 3:
        raise ValueError(f"faithfulness fractions must start at 0, end at 1 and hold an interior point: {fractions}")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"faithfulness modes {bad}: choose from {MODES}")
    inputs = adapter.prepare(dict(sample))
    removal = resolve_removal(adapter, inputs, removal)
    replacement = inputs.uncond_context if removal == "replace" else None
    orders = order_scores(scores.float().cpu(), random_orders, seed, sample_id, trivial,
                          None if foreground is None else foreground.float().cpu())
    interior = fractions[1:-1]
    rows = [(orders[o], f, keep_top) for keep_top in (False, True) for o in orders for f in interior]
    all_removed = (orders["attribution"], 1.0, False)
    num_steps = sampler.settings(adapter)["num_steps"]
    keep_steps = set(_proxy_indices(num_steps, proxy_steps))
    trajectory: list[dict] = []

    def record(info):
        if info["step"] in keep_steps:
            trajectory.append({"t": info["t"], "x": info["x"].clone(), "alpha_cumprod": info["alpha_cumprod"],
                               "denoised": info["denoised"].clone()})

    result = {"fractions": fractions, "orders": list(orders), "removal": removal, "curves": {}, "cost": {}}
    with knockout_for(adapter, mode=removal, replacement=replacement, layers=knockout_layers) as knockout:
        runs = _Runs(adapter, sampler, inputs, knockout, batch_size)
        counter = _CallCounter(adapter.step_module)
        try:
            base_latent, base_image = runs.full([None], callback=record)
            calls = {"unet_calls": counter.calls, "unet_rows": counter.rows}
            for mode in modes:
                counter.calls = counter.rows = 0
                if mode == "full":
                    latents, images = runs.full([all_removed] + rows)
                    ref_latent, ref_image = base_latent, base_image
                else:
                    latents, images = runs.proxy([all_removed] + rows, trajectory)
                    ref_latent = torch.stack([p["denoised"] for p in trajectory])
                    ref_image = torch.stack([runs.decode(p["denoised"]) for p in trajectory])
                result["curves"][mode] = _curves_from(latents, images, ref_latent, ref_image, query_mask,
                                                      list(orders), interior, mode == "proxy")
                result["cost"][mode] = {"unet_calls": counter.calls + calls["unet_calls"],
                                        "unet_rows": counter.rows + calls["unet_rows"]}
        finally:
            counter.close()
    result["baseline"] = {"latent": base_latent.cpu(), "image": base_image.cpu(), "inputs": inputs}
    return result


def _curves_from(latents, images, ref_latent, ref_image, query_mask, orders, interior, stepped: bool) -> dict:
    out = {}
    for space, got, ref in (("latent", latents, ref_latent), ("pixel", images, ref_image)):
        if stepped:   # [S, N, ...] vs [S, 1, ...]: the change averaged over the proxy steps
            weight = region_weight(query_mask, tuple(got.shape[-2:]), got)
            change = torch.stack([region_mse(got[s], ref[s], weight) for s in range(got.shape[0])]).mean(0)
        else:
            weight = region_weight(query_mask, tuple(got.shape[-2:]), got)
            change = region_mse(got, ref, weight)
        change = change.double().cpu()
        full, per_row = float(change[0]), change[1:].reshape(2, len(orders), len(interior))
        curves = {}
        for c, name in enumerate(("deletion", "insertion")):
            start, end = (0.0, full) if name == "deletion" else (full, 0.0)
            curves[name] = {o: [start, *per_row[c, i].tolist(), end] for i, o in enumerate(orders)}
        out[space] = {**curves, "all_removed": full}
    return out


def summarise_g2r(result: dict) -> dict:
    """Per-sample numbers of ``g2r_curves``: for each mode and space, the deletion / insertion AUCs of every order
    on curves normalised by the largest change seen (``normaliser``: the all-removed change, or a partial removal that
    moved the output more, then ``out_of_range`` = 1: the all-removed normaliser would have left [0, 1]), and the
    gaps of the map to the mean random order, the inverse order and each trivial order (positive = the map wins).

    Keys: ``faith_{mode}_{space}_{all_removed|normaliser|out_of_range}`` and
    ``faith_{mode}_{space}_{del|ins}_{auc|auc_inverse|auc_random|auc_random_std|gap|gap_inverse}``, plus
    ``_auc_{trivial}`` and ``_gap_{trivial}`` for each trivial order the sample has.
    """
    fractions, out = result["fractions"], {}
    randoms = [o for o in result["orders"] if o.startswith("random")]
    trivial = [o for o in result["orders"] if o in TRIVIAL_ORDERS]
    for mode, spaces in result["curves"].items():
        for space, curves in spaces.items():
            prefix = f"faith_{mode}_{space}"
            full = float(curves["all_removed"])
            peak = max(max(c) for name in ("deletion", "insertion") for c in curves[name].values())
            normaliser = torch.tensor(max(full, peak), dtype=torch.float64)
            out[f"{prefix}_all_removed"], out[f"{prefix}_normaliser"] = full, float(normaliser)
            out[f"{prefix}_out_of_range"] = float(peak > full * (1 + 1e-9) + 1e-12)
            for name, short, sign in (("deletion", "del", -1.0), ("insertion", "ins", 1.0)):
                auc = {o: float(normalised_auc(fractions, retained(torch.tensor(c), normaliser)))
                       for o, c in curves[name].items()}
                rand = torch.tensor([auc[o] for o in randoms], dtype=torch.float64)
                mean_random = float(rand.mean()) if len(rand) else math.nan
                out[f"{prefix}_{short}_auc"] = auc["attribution"]
                out[f"{prefix}_{short}_auc_inverse"] = auc["inverse"]
                out[f"{prefix}_{short}_gap_inverse"] = sign * (auc["attribution"] - auc["inverse"])
                out[f"{prefix}_{short}_auc_random"] = mean_random
                out[f"{prefix}_{short}_auc_random_std"] = float(rand.std()) if len(rand) > 1 else math.nan
                out[f"{prefix}_{short}_gap"] = sign * (auc["attribution"] - mean_random)
                for order in trivial:
                    out[f"{prefix}_{short}_auc_{order}"] = auc[order]
                    out[f"{prefix}_{short}_gap_{order}"] = sign * (auc["attribution"] - auc[order])
    if "full" in result["curves"] and "proxy" in result["curves"]:
        for space in SPACES:
            f, p = (torch.tensor(result["curves"][m][space]["deletion"]["attribution"]) for m in ("full", "proxy"))
            ff, pp = (torch.tensor(result["curves"][m][space]["all_removed"]) for m in ("full", "proxy"))
            out[f"faith_proxy_{space}_del_curve_error"] = float((retained(f, ff) - retained(p, pp)).abs().mean())
    return out


COUNTERFACTUALS = ("swap", "rotated", "null")


def pick_donor(dataset, sample: Mapping, sample_id: str, keys: Sequence[str], seed: int = 0,
               id_key: str = "sample_id") -> tuple[dict, str]:
    """Another sample of ``dataset`` whose reference is the swap counterfactual's: ``(item, its sample id)``.

    The dataset's indices are permuted by a generator seeded from (seed, sample id); the donor is the first item of
    that permutation with a different sample id and a reference (``keys``) that differs from this sample's. So the
    donor depends only on the dataset, the seed and the sample id: not on batch order, DDP rank or a restart.
    """
    keys = [k for k in keys if torch.is_tensor(sample.get(k))]
    if not keys:
        raise ValueError(f"R2G swap counterfactual of {sample_id!r}: none of the reference_keys is a tensor of the "
                         f"sample (keys {sorted(sample)})")
    n = len(dataset)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + sample_digest(sample_id))
    for index in torch.randperm(n, generator=g).tolist():
        item = dataset[index]
        donor_id = str(item[id_key][0] if isinstance(item[id_key], (list, tuple)) else item[id_key])
        if donor_id == str(sample_id):
            continue
        if all(_same_tensor(item.get(k), sample[k]) for k in keys):
            continue   # the same reference under another id: swapping it would change nothing
        return item, donor_id
    raise ValueError(f"R2G swap counterfactual of {sample_id!r}: the dataset ({n} samples) holds no other sample "
                     f"with a different reference ({list(keys)}); use a dataset of at least 2 samples or choose "
                     f"counterfactuals from ['rotated', 'null']")


def _same_tensor(item_value, batch_value) -> bool:
    if not torch.is_tensor(batch_value) or item_value is None:
        return False
    item_value = torch.as_tensor(item_value)
    return item_value.numel() == batch_value.numel() and torch.equal(
        item_value.reshape(batch_value.shape).to(batch_value), batch_value)


def swapped_reference(sample: Mapping, donor: Mapping, keys: Sequence[str]) -> dict:
    """The sample with its reference (those of ``keys`` it holds) taken from ``donor`` (a dataset item, or a batch
    of 1)."""
    present = [k for k in keys if torch.is_tensor(sample.get(k))]
    missing = [k for k in present if k not in donor]
    if missing or not present:
        raise ValueError(f"R2G swap counterfactual: reference_keys {list(keys)} must name tensors of the sample "
                         f"(keys {sorted(sample)}) that the donor holds too; the donor lacks {missing}")
    out = dict(sample)
    for key in present:
        value = torch.as_tensor(donor[key])
        out[key] = value.reshape(sample[key].shape).to(sample[key].device, sample[key].dtype)
    return out


def rotated_reference(sample: Mapping, keys: Sequence[str]) -> dict:
    """The sample with its own reference image (and mask) rotated by 180°: the same content in another layout
    (the ``rotated`` counterfactual, next to the ``swap`` with another sample's reference)."""
    out = dict(sample)
    for key in keys:
        if key in out and torch.is_tensor(out[key]):
            out[key] = torch.flip(out[key], dims=(-2, -1))
    return out


NULL_REFERENCES = ("inputs", "knockout")


def check_counterfactuals(adapter, variants: Sequence[str]) -> None:
    """The adapter's refusal of counterfactuals it cannot honour (``adapter.check_counterfactuals``, e.g. a
    text-to-image model that reads no reference image refuses ``swap``), before anything runs."""
    adapter.check_counterfactuals(list(variants))


def null_reference(adapter) -> str:
    """How ``adapter`` defines the R2G null counterfactual (its ``null_reference``): ``"inputs"`` (default; a run on
    ``null_inputs``) or ``"knockout"`` (every spatial reference token knocked out, for a model whose unconditional
    context is no null reference, e.g. PASD's negative prompt)."""
    kind = adapter.null_reference
    if kind not in NULL_REFERENCES:
        raise ValueError(f"{type(adapter).__name__}.null_reference={kind!r}; choose from {NULL_REFERENCES}")
    return kind


def null_inputs(adapter, inputs):
    """The prepared inputs of the null run: ``adapter.null_inputs(inputs)`` (by default ``inputs`` with the
    unconditional context in place of the context; e.g. zero IP-Adapter image embeds for an IP-Adapter)."""
    return adapter.null_inputs(inputs)


def knocked_out_image(adapter, sampler, inputs) -> torch.Tensor:
    """[0, 1] image of a re-run on ``inputs`` (batch 1) with every spatial reference token knocked out."""
    with knockout_for(adapter) as knockout:
        knockout.set_keep(lambda grid: torch.zeros(1, grid[0] * grid[1], dtype=torch.bool))
        return _Runs(adapter, sampler, inputs, None, 1).full([None])[1]


def cell_change(images: torch.Tensor, baseline: torch.Tensor, grid: tuple[int, ...],
                temporal_ratio: int = 1) -> torch.Tensor:
    """Mean absolute pixel change per cell of ``grid``: [N, 3, H, W] vs [1, 3, H, W] -> [N, h, w]; videos
    [N, 3, T, H, W] on a grid (F, h, w) of latent frames: latent frame 0 is video frame 0, latent frame t >= 1 the
    ``temporal_ratio`` video frames (t - 1) * r + 1 ... t * r (docs/video_maps.md) -> [N, F, h, w]."""
    diff = (images.float() - baseline.float()).abs().mean(1)
    if diff.dim() == 3:
        return F.adaptive_avg_pool2d(diff[:, None], tuple(grid))[:, 0]
    r = int(temporal_ratio)
    spans = [(0, 1)] + [((t - 1) * r + 1, t * r + 1) for t in range(1, grid[0])]
    if spans[-1][1] != diff.shape[1]:
        raise ValueError(f"a video of {diff.shape[1]} frames is not {grid[0]} latent frames at temporal ratio {r}")
    per_frame = torch.stack([diff[:, a:b].mean(1) for a, b in spans], 1)
    return F.adaptive_avg_pool2d(per_frame, tuple(grid[1:]))


@torch.no_grad()
def r2g_counterfactuals(adapter, sampler, sample: Mapping, r2g_map: torch.Tensor, *,
                        donor: Mapping | None = None, variants: Sequence[str] = ("swap", "null"),
                        region: torch.Tensor | None = None, reference_keys: Sequence[str] = ("reference",),
                        topk: float = 0.2, baseline_image: torch.Tensor | None = None, inputs=None,
                        temporal_ratio: int = 1) -> dict:
    """R2G map vs where the output changes when the reference is changed, with the same noise.

    variants: ``swap`` (the reference, i.e. ``reference_keys``, of ``donor``, another sample: ``pick_donor``),
    ``rotated`` (the sample's own reference rotated by 180°) and ``null`` (the model's unconditional context, or
    ``adapter.null_inputs(inputs)`` where the adapter has one, or with ``adapter.null_reference == "knockout"``
    every spatial reference token knocked out: ``null_reference``).
    r2g_map: [1, h, w] raw R2G ULAM, or [1, F, h, w] of a video (the change is then per latent frame and cell,
    ``cell_change`` with ``temporal_ratio``; region must be None); region: [1, 1, H, W] generated region (None =
    whole image). Returns per-sample
    numbers ``r2g_cf_{variant}_{spearman|topk}`` (inside the region), ``r2g_cf_topk_baseline`` (the mask-only map:
    top-k overlap k/n in expectation, Spearman 0), ``r2g_cf_{variant}_spearman_image`` and
    ``r2g_cf_{variant}_mask_spearman_image`` (whole image: the map vs the region mask as predictors of the change;
    the R2G trivial map) and their difference ``r2g_cf_{variant}_spearman_vs_mask``,
    ``r2g_cf_{variant}_change`` and the change maps themselves under ``"maps"``.
    """
    bad = [v for v in variants if v not in COUNTERFACTUALS]
    if bad:
        raise ValueError(f"R2G counterfactuals {bad}: choose from {COUNTERFACTUALS}")
    require_sampler_loop(adapter, sampler, "R2G counterfactuals")
    check_counterfactuals(adapter, variants)
    if "swap" in variants and donor is None:
        raise ValueError("the R2G swap counterfactual needs a donor (another sample's reference, e.g. pick_donor "
                         "over the run's dataset); without one choose variants from ['rotated', 'null']")
    inputs = inputs if inputs is not None else adapter.prepare(dict(sample))
    runs = _Runs(adapter, sampler, inputs, None, 1)
    if baseline_image is None:
        baseline_image = runs.full([None])[1]

    def counterfactual_image(variant: str) -> torch.Tensor:
        if variant == "swap":
            return runs.full([None], inputs=adapter.prepare(swapped_reference(sample, donor, reference_keys)))[1]
        if variant == "rotated":
            return runs.full([None], inputs=adapter.prepare(rotated_reference(sample, reference_keys)))[1]
        if null_reference(adapter) == "knockout":
            return knocked_out_image(adapter, sampler, inputs)
        return runs.full([None], inputs=null_inputs(adapter, inputs))[1]

    grid = tuple(r2g_map.shape[1:])
    if region is not None and len(grid) != 2:
        raise ValueError("R2G counterfactuals of video maps compare whole frames: region must be None (set "
                         "evaluators.faithfulness.region_key=null)")
    cells = region_weight(region, grid, r2g_map)[0, 0].cpu() if region is not None else torch.ones(grid)
    inside = cells >= 0.5
    score = r2g_map[0].double().cpu()
    k = max(1, math.ceil(topk * int(inside.sum())))
    out: dict = {"r2g_cf_topk_baseline": k / max(1, int(inside.sum())), "maps": {}}
    for name in variants:
        image = counterfactual_image(name)
        change = cell_change(image.cpu(), baseline_image.cpu(), grid, temporal_ratio)[0].double()
        out["maps"][name] = change
        out[f"r2g_cf_{name}_change"] = float(change[inside].mean())
        out[f"r2g_cf_{name}_spearman"] = spearman(score[inside], change[inside])
        out[f"r2g_cf_{name}_topk"] = topk_overlap(score[inside], change[inside], topk)
        out[f"r2g_cf_{name}_spearman_image"] = spearman(score, change)
        out[f"r2g_cf_{name}_mask_spearman_image"] = spearman(cells.double(), change)
        out[f"r2g_cf_{name}_spearman_vs_mask"] = (out[f"r2g_cf_{name}_spearman_image"]
                                                  - out[f"r2g_cf_{name}_mask_spearman_image"])
    return out
