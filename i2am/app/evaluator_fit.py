"""Which per-sample evaluators of the attribute task apply to a model and a dataset (docs/evaluators.md).

Two facts decide: whether the model's attributed reference is an image grid (custom, StableVITON, reference
attention) or tokens (Paint-by-Example's CLIP token, IP-Adapter image tokens, text), read from the adapter's
``attribution_layers()`` (built on the ``meta`` device at startup: no weights), and whether the data carries the
ground-truth correspondence (``data.extras`` lists ``correspondence``: the toy world).

``evaluator_set=auto`` (the default) keeps what applies: IMACS_r only on a reference grid, localisation only with ground
truth on a reference grid, and says what it left out. An evaluator named explicitly that cannot apply is a
``UserError`` naming it, the reason and the override. A video model (``adapter.video``: an image-to-video pipeline)
takes faithfulness and randomisation only, narrowed to what its frames have (``_video_spec``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from i2am.errors import UserError

AUTO_KEY = "evaluators_auto"       # set by conf/evaluator_set/auto.yaml
LOCALIZATION_TARGET = "SramLocalizationEvaluator"
IMACS_TARGET = "ImacsEvaluator"
FAITHFULNESS_TARGET = "FaithfulnessEvaluator"
RANDOMIZATION_TARGET = "RandomizationEvaluator"
# what a video model's run cannot be scored by, and why (docs/video_maps.md, "model=diffusers"); the evaluators that
# fit a video are faithfulness and randomisation, narrowed by _video_spec
VIDEO_REFUSED = {
    IMACS_TARGET: "IMACS scores a map against the try-on region of the dataset image (inpaint_mask) and the garment "
                  "mask; an image-to-video model generates frames from the reference alone, which have no such "
                  "region",
    LOCALIZATION_TARGET: "localisation compares G2R maps with the ground-truth correspondence between the person "
                         "image and the garment; the generated frames have none",
}


class EvaluatorMismatchError(UserError, ValueError):
    """An evaluator named on the command line cannot apply to the model or the data."""


@dataclass(frozen=True)
class Fit:
    reference_on_grid: bool     # the attributed reference is an image grid (not one token or a row of tokens)
    ground_truth: bool          # the data carries the true correspondence (toy world)
    relation: str               # what the reference is, for messages
    region_masks: frozenset[str] = frozenset({"inpaint_mask", "reference_mask"})   # what IMACS can score against
    video: bool = False         # the model generates a video from the reference (its maps have a frame axis)


def grid_reference(ref_grid) -> bool:
    """A LayerSpec's ``ref_grid`` is a reference image's grid: "query" or (rows, cols) with rows > 1; None is one
    token, "row" and (1, n) a sequence of tokens (IP-Adapter, text)."""
    return ref_grid == "query" or (isinstance(ref_grid, (tuple, list)) and ref_grid[0] > 1)


def adapter_fit(adapter, data_cfg) -> Fit:
    specs = adapter.attribution_layers()
    relations = sorted({s.relation for s in specs if s.relation}) or [type(adapter).__name__]
    extras = OmegaConf.select(data_cfg, "extras", default=None) if isinstance(data_cfg, DictConfig) else None
    return Fit(reference_on_grid=any(grid_reference(s.ref_grid) for s in specs),
               ground_truth="correspondence" in list(extras or []), relation=", ".join(relations),
               region_masks=data_region_masks(data_cfg), video=bool(adapter.video))


def data_region_masks(data_cfg) -> frozenset[str]:
    """The masks the data annotates: both for the benchmark layouts; for data=pairs those of its optional folders."""
    if isinstance(data_cfg, DictConfig) and str(data_cfg.get("_target_", "")).endswith("PairsDataModule"):
        from i2am.data.pairs import region_masks

        return region_masks(Path(str(data_cfg.root)))
    return Fit.region_masks


def meta_adapter(model_cfg: DictConfig):
    """The model of ``model_cfg`` on the meta device: its layers without weights or a checkpoint (seconds); None for
    a model read from a folder (``model.path``), which cannot be known without reading it: the attribute task fits
    its evaluators right after building it, before the first batch."""
    from hydra.utils import instantiate

    if model_cfg.get("path"):
        return None
    return instantiate(model_cfg, device="meta", checkpoint=None)


def _target(spec) -> str:
    return str(spec.get("_target_", "")) if isinstance(spec, (dict, DictConfig)) else ""


def fit_evaluators(cfg: DictConfig, fit: Fit) -> tuple[dict, list[str]]:
    """The evaluator specs of ``cfg.evaluators`` that apply under ``fit`` and one note per one left out or narrowed
    (``evaluator_set=auto``); raise EvaluatorMismatchError for an explicit evaluator that cannot apply."""
    specs = OmegaConf.to_container(cfg.evaluators, resolve=True) if cfg.get("evaluators") else {}
    auto = bool(cfg.get(AUTO_KEY))
    kept, notes = {}, []
    for name, spec in specs.items():
        if not spec:
            continue
        target = _target(spec)
        if fit.video:
            spec, narrowed = _video_spec(name, spec, target, fit, auto)
            notes += narrowed
            if spec is not None:
                kept[name] = spec
            continue
        if target.endswith(LOCALIZATION_TARGET) and not (fit.ground_truth and fit.reference_on_grid):
            reason = ("the data has no ground-truth correspondence (only the toy world, data=toy_vitonhd, has it)"
                      if not fit.ground_truth else
                      f"the model's reference ({fit.relation}) is tokens, not an image grid")
            if not auto:
                raise EvaluatorMismatchError(
                    f"evaluator {name!r} (localisation) cannot apply: {reason}. Drop it with evaluator_set=imacs "
                    f"(or evaluator_set=auto, which picks the evaluators that apply).")
            notes.append(f"{name}: left out, {reason}")
            continue
        if target.endswith(IMACS_TARGET) and not fit.reference_on_grid and "g2r" in spec.get("directions", ()):
            spec = {**spec, "directions": [d for d in spec["directions"] if d != "g2r"]}
            notes.append(f"{name}: IMACS_r left out, the model's reference ({fit.relation}) is tokens, not an image "
                         f"grid the garment mask could score")
        if target.endswith(IMACS_TARGET):
            spec, unscored = _without_unmasked_directions(spec, fit)
            notes += [f"{name}: {note}" for note in unscored]
            if not spec["directions"]:
                if not auto:
                    raise EvaluatorMismatchError(f"evaluator {name!r} (IMACS) cannot apply: {'; '.join(unscored)}. "
                                                 f"Add the masks, or drop it with evaluator_set=none.")
                continue
        kept[name] = spec
    return kept, notes


def _video_spec(name: str, spec: dict, target: str, fit: Fit, auto: bool) -> tuple[dict | None, list[str]]:
    """An evaluator spec on a video model: faithfulness and randomisation narrowed to what a video has (no region of
    the dataset image, no input-only orders or maps on it), the others left out (auto) or refused (named
    explicitly)."""
    short = target.rsplit(".", 1)[-1]
    if not target.endswith((FAITHFULNESS_TARGET, RANDOMIZATION_TARGET)):
        reason = VIDEO_REFUSED.get(short, f"{short or 'it'} scores images, not the video maps of {fit.relation}")
        if not auto:
            raise EvaluatorMismatchError(
                f"evaluator {name!r} cannot apply to a video model: {reason}. Drop it with evaluator_set=none; the "
                f"evaluators that fit a video are +evaluator@evaluators.faithfulness=faithfulness and "
                f"+evaluator@evaluators.randomization=randomization (docs/video_maps.md)")
        return None, [f"{name}: left out, {reason}"]
    if target.endswith(FAITHFULNESS_TARGET):
        changes = {"region_key": None, "foreground_key": None, "trivial": []}
        note = (f"{name}: whole frames compared (region_key=null) and no trivial orders (they are drawn on the "
                f"dataset image's grid, not on the reference's tokens)")
    else:
        changes = {"region_key": None, "input_keys": {}}
        note = f"{name}: no input-only null maps (input_keys: the dataset image's masks are not on the video)"
    return {**spec, **changes}, [note]


def _without_unmasked_directions(spec: dict, fit: Fit) -> tuple[dict, list[str]]:
    """IMACS ``spec`` without the directions whose region the data has no mask of (data=pairs without mask/ or
    reference_mask/: the region would be the whole image, with no outside to compare with)."""
    needs = {"r2g": ("inpaint_mask", "IMACS_g", "mask/"), "g2r": ("reference_mask", "IMACS_r", "reference_mask/")}
    directions = list(spec.get("directions", needs))
    missing = [d for d in directions if needs[d][0] not in fit.region_masks]
    notes = [f"{needs[d][1]} left out, the data has no {needs[d][0]} (data=pairs: add {needs[d][2]}<stem>.png)"
             for d in missing]
    return {**spec, "directions": [d for d in directions if d not in missing]}, notes


def check_evaluators(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """The startup check: build the model on ``meta`` and fit ``cfg.evaluators``; returns the names kept and the
    notes."""
    named = [k for k, v in (cfg.get("evaluators") or {}).items() if v]
    if not named or not isinstance(cfg.get("model"), DictConfig):
        return named, []
    adapter = meta_adapter(cfg.model)
    if adapter is None:
        return named, [f"model.path={cfg.model.path}: fitted once the model is built, before the first batch"]
    kept, notes = fit_evaluators(cfg, adapter_fit(adapter, cfg.get("data")))
    return list(kept), notes
