"""The checks every task runs before its run folder exists, and ``i2am check <task>`` runs and reports one by one.

``CHECKS`` is the one list: the config's types and ranges (``config_schema.validate``), the data layout (every file
the dataset will read present, its layout checks passing, and under ``i2am check`` every image decoding; a data root
the run writes itself, e.g. the toy world, is left to the run when it does not exist yet; ``data=pairs`` is also
checked against the model), the keys of ``model.checkpoint`` against the model, the evaluators against the model
(``evaluator_fit``) and ``model.path`` (a folder, or a hub id that is cached or, online, downloadable; nothing is
downloaded); the model is built on the ``meta`` device (no weights). Each check raises a ``UserError`` naming the
key or file at fault and the fix; nothing is sampled, trained or written.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from i2am.adapters.diffusers.model_path import describe_model_path
from i2am.adapters.diffusers.video.model import VIDEO_PIPELINES
from i2am.app.config_schema import validate
from i2am.app.evaluator_fit import check_evaluators, meta_adapter
from i2am.data.image_io import IMAGE_EXTENSIONS
from i2am.data.layout import LayoutError
from i2am.errors import UserError

PAIRS_TARGET = "PairsDataModule"
NO_REFERENCE_MODELS = {   # model families (name before "-tiny") that data=pairs cannot feed, and why
    "pasd": "PASD super-resolves a low-resolution image and takes no reference image; use an SR dataset "
            "(data=sr_toy, sr_div2k, ...)"}


def _image_files(dataset) -> list[Path]:
    """The image files a dataset's samples name (``samples[i].files``), where it lists them."""
    files = [p for s in getattr(dataset, "samples", ()) for p in getattr(s, "files", {}).values() if p is not None]
    return [Path(p) for p in files if Path(p).suffix.lower() in IMAGE_EXTENSIONS]


def undecodable(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, SyntaxError, ValueError) as err:
            problems.append(f"{path} cannot be decoded ({type(err).__name__}: {err})")
    return problems


def check_pairs_fit(cfg: DictConfig) -> None:
    """``data=pairs``: the model takes a reference, and data.size is the model's image size (a model read from
    ``model.path`` is sized by its config's ``image_size``)."""
    data, model = cfg.data, cfg.get("model")
    name = str(model.get("name", "")) if isinstance(model, DictConfig) else ""
    if name.split("-")[0] in NO_REFERENCE_MODELS:
        raise UserError(f"data=pairs cannot feed model={name}: {NO_REFERENCE_MODELS[name.split('-')[0]]}")
    adapter = meta_adapter(model) if isinstance(model, DictConfig) else None
    model_size = tuple(adapter.image_size) if adapter is not None else tuple(model.get("image_size") or ())
    size = tuple(int(v) for v in data.size)
    if model_size and size != tuple(int(v) for v in model_size):
        raise UserError(f"data.size={list(size)} but model={name} generates {list(model_size)} (H, W) images: "
                        f"set data.size={list(model_size)}, to which every image of data.root is resized")


def check_one_reference_per_call(cfg: DictConfig) -> None:
    """An image-to-video pipeline conditions a whole call on one reference image (the frame its video starts from):
    ``data.batch_size`` must be 1."""
    data, model = cfg.get("data"), cfg.get("model")
    if not isinstance(data, DictConfig) or not isinstance(model, DictConfig):
        return
    pipeline, batch = str(model.get("pipeline", "")), data.get("batch_size")
    if pipeline in VIDEO_PIPELINES and batch is not None and int(batch) != 1:
        raise UserError(f"data.batch_size={batch}: model.pipeline={pipeline} conditions a whole pipeline call on one "
                        f"reference image (the frame its video starts from); set data.batch_size=1")


def check_data(cfg: DictConfig, thorough: bool) -> str:
    """Every file ``cfg.data``'s dataset reads is present and (``thorough``) decodes; its layout checks (sizes, masks)
    pass; the model takes the data's batches (``check_one_reference_per_call``). Task startup leaves out the decoding
    (minutes on a full dataset); ``i2am check`` does it."""
    check_one_reference_per_call(cfg)
    data = cfg.get("data")
    if isinstance(data, DictConfig) and str(data.get("_target_", "")).endswith(PAIRS_TARGET):
        check_pairs_fit(cfg)
    if not isinstance(data, DictConfig) or "_target_" not in data or "root" not in data:
        return "no dataset"
    module, root = instantiate(data), Path(str(data.root))
    written_by_the_run = (getattr(module, "auto_write_toy", False) or getattr(module, "build_if_missing", False)
                          or getattr(module, "layout", None) == "toy")
    if written_by_the_run and not root.exists():
        return f"data.root={root} is written on the first run"
    if not thorough:
        return f"{len(module.build_dataset())} samples under {root}"
    level = getattr(module, "validate", "full")
    module.validate = "off"                  # files only: decode them before the sizes are read from their headers
    dataset = module.build_dataset()
    files = _image_files(dataset)
    problems = undecodable(files)
    if problems:
        fix = f"replace these files, or point data.root (now {root}) at a complete copy"
        raise LayoutError("data", root, [*problems, fix])
    module.validate = level
    module.build_dataset()
    return f"{len(dataset)} samples, {len(files)} image files decoded under {root}"


def check_checkpoint(cfg: DictConfig, thorough: bool) -> str:
    """``model.checkpoint`` is readable and its keys and shapes fit the model: the model's own loader
    (``load_checkpoint``: conversion from the original layout, strict) run on a ``meta``-device model."""
    model = cfg.get("model")
    path = model.get("checkpoint") if isinstance(model, DictConfig) else None
    if not path:
        return "none given"
    try:
        adapter = instantiate(model, device="meta")
    except InstantiationException as err:   # Hydra wraps the CheckpointError naming the keys that do not fit
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise
    return f"{path} fits {adapter.name}"


def check_model_path(cfg: DictConfig, thorough: bool) -> str:
    """``model.path`` (the diffusers kinds) is a local folder, or a hub id in the local cache or downloadable (online);
    nothing is downloaded here."""
    model = cfg.get("model")
    path = model.get("path") if isinstance(model, DictConfig) else None
    return describe_model_path(path) if path else "none given"


def check_config(cfg: DictConfig, thorough: bool) -> str:
    validate(cfg)
    return "types and ranges"


def check_evaluator_fit(cfg: DictConfig, thorough: bool) -> str:
    kept, notes = check_evaluators(cfg)
    return (", ".join(kept) or "none") + (f" ({'; '.join(notes)})" if notes else "")


# (name, check(cfg, thorough) -> what passed); thorough: ``i2am check`` (the startup of a task is not)
CHECKS: list[tuple[str, Callable[[DictConfig, bool], str]]] = [
    ("config", check_config), ("data", check_data), ("checkpoint", check_checkpoint),
    ("evaluators", check_evaluator_fit), ("model path", check_model_path)]


def run_checks(cfg: DictConfig) -> None:
    """Every check in order, the data files' headers only; the first UserError stops (task startup)."""
    for _, check in CHECKS:
        check(cfg, thorough=False)


def report(cfg: DictConfig) -> tuple[list[str], bool]:
    """One line per check (``ok  <name>: <what>`` or ``FAIL <name>: <problem and fix>``) and whether all passed;
    a failed check does not stop the others, except that a broken config stops everything after it."""
    lines, passed = [], True
    for name, check in CHECKS:
        try:
            lines.append(f"ok    {name}: {check(cfg, thorough=True)}")
        except UserError as err:
            lines.append(f"FAIL  {name}: " + " ".join(part.strip() for part in str(err).splitlines()))
            passed = False
            if name == "config":
                break
    return lines, passed
