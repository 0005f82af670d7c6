"""Typed schemas of the config groups users override most, checked right after composition.

A wrong type or an unknown key fails before any data or model is touched, naming the key and the value:
``i2am attribute sampler.num_steps=abc`` -> ``sampler.num_steps='abc': Value 'abc' of type 'str' could not be
converted to Integer``. Checked groups: ``sampler``, ``capture``, ``render``, ``paths``, ``trainer`` and the size
keys of ``data`` (``limit``, ``batch_size``, ``num_workers``); other groups are free-form.

Adding a key to a preset of a checked group (e.g. a new ``conf/sampler/<name>.yaml`` with a setting of its own)
means adding a field to its schema here; a new preset that only uses the existing keys needs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from .attribution.config import CFG_LAYOUTS, DIRECTIONS

# OmegaConf checks enum members by name: these accept exactly the strings the code accepts.
Direction = Enum("Direction", {name: name for name in DIRECTIONS})
CfgLayout = Enum("CfgLayout", {name: name for name in CFG_LAYOUTS})
RenderPreset = Enum("RenderPreset", {"official": "official", "clean": "clean"})


@dataclass
class SamplerSchema:
    """conf/sampler/*.yaml -> i2am.models.sampler.Sampler (null = the model's default)."""
    _target_: str = "i2am.models.sampler.Sampler"
    scheduler: str | None = None        # ddim | unipc | plms | custom_ddim | a diffusers scheduler class name
    num_steps: int | None = None
    guidance: Any = None                # a number, or one value per step
    eta: float | None = None
    start_code: str | None = None
    paste: bool | None = None           # the custom DDIM's re-noised paste outside the generation mask
    seed: int = 0
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    progress: bool = False


@dataclass
class CaptureSchema:
    """conf/capture/*.yaml -> i2am.attribution.CaptureConfig."""
    _target_: str = "i2am.attribution.CaptureConfig"
    num_steps: int | None = None
    time_groups: int = 5
    directions: list[Direction] = field(default_factory=lambda: [Direction.r2g, Direction.g2r])
    layers: Any = "all"                 # "all", "all+mid", "group:<name>" or a list of layer names
    sram_layers: Any = "auto"           # "auto" or a list of layer names
    cfg_layout: CfgLayout = CfgLayout.auto
    chunk_budget: int = 2**26
    r2g_grid: list[int] | None = None
    g2r_grid: list[int] | None = None
    family_layers: dict[str, dict[str, list[str]]] = field(default_factory=dict)


@dataclass
class RenderSchema:
    """``render:`` of the attribute task (i2am.attribution.render.to_image)."""
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
    num_nodes: int = 1
    precision: Any = "32-true"
    max_epochs: int | None = None
    min_epochs: int | None = None
    max_steps: int = -1
    min_steps: int | None = None
    max_time: str | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    limit_test_batches: float | None = None
    limit_predict_batches: float | None = None
    overfit_batches: float = 0.0
    val_check_interval: float | None = None
    check_val_every_n_epoch: int | None = 1
    num_sanity_val_steps: int | None = None
    log_every_n_steps: int | None = None
    enable_checkpointing: bool | None = None
    enable_progress_bar: bool | None = None
    enable_model_summary: bool | None = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None
    deterministic: Any = None           # bool or "warn"
    benchmark: bool | None = None
    inference_mode: bool = True
    use_distributed_sampler: bool = True
    detect_anomaly: bool = False
    barebones: bool = False
    sync_batchnorm: bool = False
    reload_dataloaders_every_n_epochs: int = 0
    fast_dev_run: Any = False


@dataclass
class DataLimitsSchema:
    """The size keys every conf/data/*.yaml shares (the rest of a data config depends on its dataset)."""
    limit: int | None = None
    batch_size: int = 1
    num_workers: int = 0


GROUP_SCHEMAS = {"sampler": SamplerSchema, "capture": CaptureSchema, "render": RenderSchema,
                 "paths": PathsSchema, "trainer": TrainerSchema}


class ConfigValueError(ValueError):
    """A composed config breaks its group's schema: the message names the key and the value."""


def _values(node: DictConfig):
    """The node with interpolations resolved where they can be (a ${hydra:...} cannot outside a Hydra run)."""
    try:
        return OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException:
        return node


def check_group(group: str, schema: type, values) -> None:
    """Merge ``values`` into the typed ``schema`` node; raise ConfigValueError naming ``<group>.<key>=<value>``."""
    try:
        OmegaConf.merge(OmegaConf.structured(schema), values)
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


def validate(cfg: DictConfig) -> None:
    """Check every schema-covered group present in a composed task config."""
    for group, schema in GROUP_SCHEMAS.items():
        node = OmegaConf.select(cfg, group, default=None)
        if isinstance(node, DictConfig):
            check_group(group, schema, _values(node))
    data = OmegaConf.select(cfg, "data", default=None)
    if isinstance(data, DictConfig):
        sizes = _values(data)
        sizes = {k: sizes[k] for k in DataLimitsSchema.__dataclass_fields__ if k in sizes}
        check_group("data", DataLimitsSchema, sizes)
