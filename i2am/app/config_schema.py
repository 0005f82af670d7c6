"""Typed schemas of the config groups users override most, checked right after composition.

A wrong type or an unknown key fails before any data or model is touched, naming the key and the value:
``i2am attribute sampler.num_steps=abc`` -> ``sampler.num_steps='abc': Value 'abc' of type 'str' could not be
converted to Integer``. Checked groups: ``sampler``, ``capture``, ``render``, ``paths``, ``trainer`` and the size
keys of ``data`` (``limit``, ``batch_size``, ``num_workers``, ``create``); other groups are free-form. Counts carry
their smallest value (``at_least``): ``sampler.num_steps=-3`` -> ``sampler.num_steps=-3 is out of range: it must be
an integer >= 1``. ``validate`` also checks what spans groups or looks at the disk without writing: time groups vs
steps, ``run_dir`` naming a file, a toy data root that does not exist or holds another toy world (``check_toy_data``).

Adding a key to a preset of a checked group (e.g. a new ``conf/sampler/<name>.yaml`` with a setting of its own)
means adding a field to its schema here; a new preset that only uses the existing keys needs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from i2am.data.toy.location import check_toy_location
from i2am.data.toy.vitonhd import check_toy_world
from i2am.engine.config import CFG_LAYOUTS, DIRECTIONS
from i2am.errors import UserError

# OmegaConf checks enum members by name: these accept exactly the strings the code accepts.
Direction = Enum("Direction", {name: name for name in DIRECTIONS})
CfgLayout = Enum("CfgLayout", {name: name for name in CFG_LAYOUTS})
RenderPreset = Enum("RenderPreset", {"official": "official", "clean": "clean"})


def at_least(minimum: int) -> dict:
    """Field metadata: the smallest value a count accepts (checked after the type, null passes)."""
    return {"minimum": minimum}


@dataclass
class SamplerSchema:
    """conf/sampler/*.yaml -> i2am.sampling.sampler.Sampler (null = the model's default)."""
    _target_: str = "i2am.sampling.sampler.Sampler"
    scheduler: str | None = None     # ddim | unipc | plms | custom_ddim | a diffusers scheduler class name
    num_steps: int | None = field(default=None, metadata=at_least(1))
    guidance: Any = None                # a number, or one value per step
    eta: float | None = None
    start_code: str | None = None
    paste: bool | None = None        # the custom DDIM's re-noised paste outside the generation mask
    seed: int = 0
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    progress: bool = False


@dataclass
class CaptureSchema:
    """conf/capture/*.yaml -> i2am.engine.CaptureConfig."""
    _target_: str = "i2am.engine.CaptureConfig"
    num_steps: int | None = field(default=None, metadata=at_least(1))
    time_groups: int | None = field(default=None, metadata=at_least(1))   # null = min(5, steps)
    directions: list[Direction] = field(default_factory=lambda: [Direction.r2g, Direction.g2r])
    layers: Any = "all"                 # "all", "all+mid", "group:<name>" or a list of layer names
    sram_layers: Any = "auto"           # "auto" or a list of layer names
    cfg_layout: CfgLayout = CfgLayout.auto
    chunk_budget: int = field(default=2**26, metadata=at_least(1))
    one_pass_budget: int = field(default=2**29, metadata=at_least(1))   # a block formed whole to save a 2nd pass
    kernel_stats: bool = True           # false: recompute the share log-sum-exp instead of reading the kernel's
    r2g_grid: list[int] | None = None
    g2r_grid: list[int] | None = None
    family_layers: dict[str, dict[str, list[str]]] = field(default_factory=dict)


@dataclass
class RenderSchema:
    """``render:`` of the attribute task (i2am.engine.render.to_image)."""
    preset: RenderPreset = RenderPreset.official
    cloth_forcing: bool = False


@dataclass
class PathsSchema:
    """conf/paths/*.yaml."""
    root_dir: str = "."
    data_dir: str = "data"
    ckpt_dir: str = "checkpoints"
    output_dir: str = "outputs"


@dataclass
class TrainerSchema:
    """conf/trainer/*.yaml: the lightning.Trainer arguments i2am passes on (default_root_dir and logger are set by the
    task). Union-typed Trainer arguments are ``Any`` here and left to Lightning."""
    _target_: str = "lightning.Trainer"
    accelerator: str = "cpu"
    strategy: Any = None
    devices: Any = 1
    num_nodes: int = field(default=1, metadata=at_least(1))
    precision: Any = "32-true"
    max_epochs: int | None = field(default=None, metadata=at_least(-1))   # -1: no limit
    min_epochs: int | None = field(default=None, metadata=at_least(0))
    max_steps: int = field(default=-1, metadata=at_least(-1))               # -1: no limit
    min_steps: int | None = field(default=None, metadata=at_least(0))
    max_time: str | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    limit_test_batches: float | None = None
    limit_predict_batches: float | None = None
    overfit_batches: float = 0.0
    val_check_interval: float | None = None
    check_val_every_n_epoch: int | None = field(default=1, metadata=at_least(1))
    num_sanity_val_steps: int | None = field(default=None, metadata=at_least(-1))   # -1: all
    log_every_n_steps: int | None = field(default=None, metadata=at_least(0))
    enable_checkpointing: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accumulate_grad_batches: int = field(default=1, metadata=at_least(1))
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None
    deterministic: Any = None           # bool or "warn"
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    detect_anomaly: bool = False
    barebones: bool = False
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = field(default=0, metadata=at_least(0))
    fast_dev_run: Any = False


@dataclass
class DataLimitsSchema:
    """The size keys every conf/data/*.yaml shares, and ``create`` of the toy presets (the rest of a data config
    depends on its dataset; a key is checked where the preset has it)."""
    limit: int | None = field(default=None, metadata=at_least(1))
    batch_size: int = field(default=1, metadata=at_least(1))
    num_workers: int = field(default=0, metadata=at_least(0))
    create: bool = False    # toy presets: write a new toy world at a data.root that does not exist yet


GROUP_SCHEMAS = {"sampler": SamplerSchema, "capture": CaptureSchema, "render": RenderSchema,
                 "paths": PathsSchema, "trainer": TrainerSchema}


class ConfigValueError(UserError, ValueError):
    """A composed config breaks its group's schema: the message names the key and the value."""


def _values(node: DictConfig):
    """The node with interpolations resolved where they can be (a ${hydra:...} cannot outside a Hydra run)."""
    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException:
        return node


def check_group(group: str, schema: type, values) -> None:
    """Merge ``values`` into the typed ``schema`` node and check the counts' ranges; raise ConfigValueError naming
    ``<group>.<key>=<value>``."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), values)
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = str(err.key if err.key is not None else err.full_key)
        value = OmegaConf.select(OmegaConf.create(values), key, default=None) if values is not None else None
        known = ", ".join(f for f in schema.__dataclass_fields__)
        raise ConfigValueError(f"unknown config key {group}.{key} (value {value!r}); {group} accepts: {known}") \
            from None
    except OmegaConfBaseException as err:
        key = str(err.full_key or err.key)
        value = OmegaConf.select(OmegaConf.create(values), key, default=None)
        message = str(err.msg).split("\n")[0] if getattr(err, "msg", None) else str(err).split("\n")[0]
        raise ConfigValueError(f"{group}.{key}={value!r}: {message}") from None
    for name, spec in schema.__dataclass_fields__.items():
        minimum, value = spec.metadata.get("minimum"), typed.get(name)
        if minimum is not None and isinstance(value, int) and value < minimum:
            raise ConfigValueError(f"{group}.{name}={value} is out of range: it must be an integer >= {minimum}. "
                                   f"Fix it on the command line, e.g. {group}.{name}={max(minimum, 1)}.")


def check_time_groups(cfg: DictConfig) -> None:
    """``capture.time_groups`` cannot exceed the steps when the config fixes them (else the run's plan checks it)."""
    groups = OmegaConf.select(cfg, "capture.time_groups", default=None)
    for key in ("sampler.num_steps", "capture.num_steps"):
        steps = OmegaConf.select(cfg, key, default=None)
        if isinstance(groups, int) and isinstance(steps, int) and groups > steps:
            raise ConfigValueError(f"capture.time_groups={groups} is more than the {steps} denoising steps ({key}="
                                   f"{steps}): set capture.time_groups to at most {steps}, or to null for "
                                   f"min(5, steps).")


def check_toy_data(data: dict) -> None:
    """The folders of a toy data preset: a missing one only at its default location (or with ``data.create=true``),
    an existing toy VITON-HD world only with the arguments asked for (it is never changed in place)."""
    for key in ("root", "coco_root"):
        if f"default_{key}" in data:
            check_toy_location(data[key], data[f"default_{key}"], bool(data.get("create")), f"data.{key}")
    if str(data.get("_target_", "")).endswith(".VitonHDDataModule") and Path(data["root"]).exists():
        check_toy_world(Path(data["root"]), {"size": list(data["size"]), **data.get("toy", {})})


def check_run_dir(cfg: DictConfig) -> None:
    """``run_dir`` names a folder (new or earlier), never an existing file."""
    path = OmegaConf.select(cfg, "run_dir", default=None, throw_on_resolution_failure=False)
    if path and Path(str(path)).exists() and not Path(str(path)).is_dir():
        raise ConfigValueError(f"run_dir={path} is an existing file, not a folder: give run_dir a folder (a new path "
                               f"starts a new run, an earlier run's folder resumes it), or move the file away.")


def validate(cfg: DictConfig) -> None:
    """Everything the composed config alone can show wrong, checked before any folder, data or model exists: the
    schema-covered groups (types, unknown keys, ranges), time groups vs steps, ``run_dir`` and a toy data root."""
    for group, schema in GROUP_SCHEMAS.items():
        node = OmegaConf.select(cfg, group, default=None)
        if isinstance(node, DictConfig):
            check_group(group, schema, _values(node))
    data = OmegaConf.select(cfg, "data", default=None)
    if isinstance(data, DictConfig):
        values = _values(data)
        sizes = {k: values[k] for k in DataLimitsSchema.__dataclass_fields__ if k in values}
        check_group("data", DataLimitsSchema, sizes)
        if values.get("auto_write_toy"):
            check_toy_data(values)
    check_time_groups(cfg)
    check_run_dir(cfg)
