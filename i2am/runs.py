"""The run folder: the one owner of every path a run writes or reads, of atomic writes and of ``metrics.json``.

A run folder holds (docs/runs.md)::

    config.yaml                     the composed config, with the values that ran where it left them to defaults
    .hydra/, cli.log                Hydra's record of the command and the run's log (CLI runs, also with run_dir=)
    FAILED                          the error of a run that failed (removed when the run is started again)
    metrics.json                    flat name -> number map (plus n_samples); NaN / inf are written as null
    samples/<id>.png                generated images            maps/<id>.safetensors   raw attribution maps
    figures/<id>.png                per-sample panels           per_sample/<id>/        an evaluator's own files
    metrics/<id>.json               a sample's values: the sample's done-marker, written last
    metrics/<id>.states.pt          a sample's evaluator states (i2am.evaluation.state_merge: the dataset values)
    checkpoints/last.ckpt, checkpoints/step=<N>.ckpt     training runs

Tasks, the report, ``i2am evaluate`` and the experiment scripts read and write runs only through :class:`RunDir`.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
FAILED = "FAILED"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


def safe_name(sample_id: str) -> str:
    """A file-system-safe, still readable name for a sample id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(sample_id))


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then rename onto ``path``: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def json_number(value):
    """A metric value as JSON can hold it: numbers (0-d tensors unwrapped), NaN and inf as None."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(record: Mapping[str, Any]) -> str:
    """Valid JSON (no bare NaN/Infinity) of a flat record: numbers, strings, booleans and None are kept."""
    clean = {}
    for key, value in record.items():
        value = json_number(value)
        if isinstance(value, (int, float, str, bool)) or value is None:
            clean[key] = value
    return json.dumps(clean, indent=1, sort_keys=True, allow_nan=False) + "\n"


class RunDir:
    """One run folder. ``RunDir(path)`` neither creates nor checks anything; ``create()`` makes the folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # ---- config and metrics ----------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    def save_config(self, cfg, ran: Mapping[str, Any] | None = None) -> Path:
        """The composed config (also when the task runs through the compose API: no .hydra/ folder then); ``ran``
        (dotted key -> value) records what ran where the config left a default to the model, e.g.
        ``{"sampler.num_steps": 50}`` in place of ``null``."""
        import copy

        from omegaconf import OmegaConf

        cfg = copy.deepcopy(cfg)
        OmegaConf.set_struct(cfg, False)
        for key, value in (ran or {}).items():
            OmegaConf.update(cfg, key, value, force_add=True)
        return atomic_write_text(self.config_file, OmegaConf.to_yaml(cfg, resolve=False))

    def load_config(self):
        """The run's config, or None when it has none."""
        from omegaconf import OmegaConf

        return OmegaConf.load(self.config_file) if self.config_file.is_file() else None

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    def is_finished(self) -> bool:
        return self.metrics_file.is_file() and not self.failed_file.is_file()

    # ---- failure marker --------------------------------------------------------------------------------------
    @property
    def failed_file(self) -> Path:
        return self.path / FAILED

    def mark_failed(self, task: str, error: BaseException) -> Path | None:
        """``FAILED``: the task and its error, so the folder never passes for a finished run; None when the folder
        does not exist (a run refused before it was created)."""
        if not self.path.is_dir():
            return None
        text = f"i2am {task} failed: {type(error).__name__}: {error}\n"
        return atomic_write_text(self.failed_file, text)

    def failure(self) -> str | None:
        """The recorded error of a failed run, or None."""
        return self.failed_file.read_text().strip() if self.failed_file.is_file() else None

    def clear_failure(self) -> None:
        self.failed_file.unlink(missing_ok=True)

    def read_metrics(self) -> dict:
        if not self.metrics_file.is_file():
            raise FileNotFoundError(f"{self.path} is not a finished run: {METRICS} is missing")
        return json.loads(self.metrics_file.read_text())

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """metrics.json, replaced atomically: the flat numeric (and string) entries of ``metrics``."""
        return atomic_write_text(self.metrics_file, to_json(metrics))

    def update_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """Merge ``metrics`` into metrics.json (e.g. ``i2am evaluate`` adding quality to an attribute run)."""
        record = json.loads(self.metrics_file.read_text()) if self.metrics_file.is_file() else {}
        return self.write_metrics({**record, **metrics})

    # ---- per-sample files ------------------------------------------------------------------------------------
    def sample_image(self, sample_id: str) -> Path:
        return self.path / "samples" / f"{safe_name(sample_id)}.png"

    def sample_maps(self, sample_id: str) -> Path:
        return self.path / "maps" / f"{safe_name(sample_id)}.safetensors"

    def sample_figure(self, sample_id: str) -> Path:
        return self.figure_file(sample_id)

    def figure_file(self, name: str) -> Path:
        """``figures/<name>.png``: a sample's panel, or a run-level figure such as a correlation scatter."""
        return self.path / "figures" / f"{safe_name(name)}.png"

    def sample_dir(self, sample_id: str) -> Path:
        """A folder for one sample's own files (an evaluator's curves, ...); not created here."""
        return self.path / "per_sample" / safe_name(sample_id)

    def sample_files(self, name: str) -> list[Path]:
        """Every sample folder's file ``name`` (e.g. an evaluator's ``faithfulness.json``), in sorted order."""
        return sorted((self.path / "per_sample").glob(f"*/{name}"))

    def sample_record_file(self, sample_id: str) -> Path:
        return self.path / "metrics" / f"{safe_name(sample_id)}.json"

    def sample_states_file(self, sample_id: str) -> Path:
        return self.path / "metrics" / f"{safe_name(sample_id)}.states.pt"

    def is_done(self, sample_id: str) -> bool:
        return self.sample_record_file(sample_id).is_file()

    def save_states(self, sample_id: str, states: Mapping[str, Any]) -> Path:
        import torch

        return atomic_write(self.sample_states_file(sample_id), lambda tmp: torch.save(dict(states), tmp))

    def mark_done(self, sample_id: str, values: Mapping[str, Any]) -> Path:
        """The sample's done-marker ``metrics/<id>.json``: written last, atomically, after every other file of the
        sample, so a run killed at any moment resumes exactly at the first sample without one."""
        return atomic_write_text(self.sample_record_file(sample_id), to_json({"sample_id": sample_id, **values}))

    def sample_record(self, sample_id: str) -> dict:
        file = self.sample_record_file(sample_id)
        return json.loads(file.read_text()) if file.is_file() else {}

    def sample_records(self) -> list[dict]:
        """Every finished sample's values, in sorted file order."""
        return [json.loads(p.read_text()) for p in sorted((self.path / "metrics").glob("*.json"))]

    def done_states(self) -> Iterator[dict]:
        """The evaluator states of every finished sample, in sorted sample-id order."""
        import torch

        for file in sorted((self.path / "metrics").glob("*.states.pt")):
            if file.with_name(file.name.replace(".states.pt", ".json")).is_file():
                yield torch.load(file, map_location="cpu", weights_only=True)

    def sample_ids(self) -> list[str]:
        """File-safe ids of the samples that have both an image and maps, in sorted order."""
        maps = {p.name[: -len(".safetensors")] for p in (self.path / "maps").glob("*.safetensors")}
        return sorted(p.stem for p in (self.path / "samples").glob("*.png") if p.stem in maps)

    def figures(self, pattern: str = "*.png") -> list[Path]:
        return sorted((self.path / "figures").glob(pattern))

    # ---- training checkpoints --------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint_file(self) -> Path:
        return self.checkpoint_dir / LAST_CHECKPOINT

    def last_checkpoint(self) -> Path | None:
        return self.last_checkpoint_file if self.last_checkpoint_file.is_file() else None

    step_checkpoint_pattern = "step={step}"   # ModelCheckpoint's filename template of the intermediate checkpoints

    def step_checkpoints(self) -> dict[int, Path]:
        """``step=<N>.ckpt`` files of a training run: step -> path, in step order."""
        found = {int(p.stem.split("=")[1]): p for p in self.checkpoint_dir.glob("step=*.ckpt")}
        return dict(sorted(found.items()))


def sweep_jobs(sweep_dir: str | Path) -> dict[str, RunDir]:
    """The finished job folders of a Hydra multirun folder (each has .hydra/ and metrics.json), by folder name."""
    folder = Path(sweep_dir)
    if not folder.is_dir():
        return {}
    jobs = (RunDir(p) for p in sorted(folder.iterdir()) if (p / ".hydra").is_dir())
    return {job.name: job for job in jobs if job.is_finished()}
