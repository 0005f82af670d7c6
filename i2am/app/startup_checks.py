"""The checks every task runs before its run folder exists, and ``i2am check <task>`` runs and reports one by one.

``CHECKS`` is the one list: the config's types and ranges (``config_schema.validate``), the data layout (every file
the dataset will read present, its layout checks passing, and under ``i2am check`` every image decoding; a data root
the run writes itself, e.g. the toy world, is left to the run when it does not exist yet), the keys of
``model.checkpoint`` against the model, and the evaluators against the model (``evaluator_fit``); the model is built
on the ``meta`` device (no weights). Each check raises a ``UserError`` naming the key or file at fault and the fix;
nothing is sampled, trained or written.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from i2am.app.config_schema import validate
from i2am.app.evaluator_fit import check_evaluators
from i2am.data.image_io import IMAGE_EXTENSIONS
from i2am.data.layout import LayoutError
from i2am.errors import UserError


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


def check_data(cfg: DictConfig, thorough: bool) -> str:
    """Every file ``cfg.data``'s dataset reads is present and (``thorough``) decodes; its layout checks (sizes, masks)
    pass. Task startup leaves out the decoding (minutes on a full dataset); ``i2am check`` does it."""
    data = cfg.get("data")
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


def check_config(cfg: DictConfig, thorough: bool) -> str:
    validate(cfg)
    return "types and ranges"


def check_evaluator_fit(cfg: DictConfig, thorough: bool) -> str:
    kept, notes = check_evaluators(cfg)
    return (", ".join(kept) or "none") + (f" ({'; '.join(notes)})" if notes else "")


# (name, check(cfg, thorough) -> what passed); thorough: ``i2am check`` (the startup of a task is not)
CHECKS: list[tuple[str, Callable[[DictConfig, bool], str]]] = [
    ("config", check_config), ("data", check_data), ("checkpoint", check_checkpoint),
    ("evaluators", check_evaluator_fit)]


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
