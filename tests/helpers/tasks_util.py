"""Running tasks in tests: through Hydra's compose API in-process, or through the CLI in a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from helpers.paths import REPO

ROOT = REPO
CONF = ROOT / "conf"


def compose_task(task: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=task, overrides=overrides)


def run_task(task: str, overrides: list[str]) -> dict:
    from i2am.app.tasks import get_task

    return get_task(task).run(compose_task(task, overrides))


def cli(task: str, overrides: list[str], timeout: int = 600, check: bool = True, env: dict | None = None):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
                   **(env or {})}
    environment.pop("I2AM_TASK", None)
    proc = subprocess.run([sys.executable, "-m", "i2am.app.cli", task, *overrides], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"i2am {task} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def toy_overrides(tmp: Path, *extra: str) -> list[str]:
    """A tiny attribute run on the toy world: custom-tiny, 2 DDIM steps, 4 samples."""
    return [f"paths.data_dir={tmp / 'data'}", f"run_dir={tmp / 'run'}", "model=custom-tiny",
            "sampler.num_steps=2", "data.limit=4", "data.batch_size=2", "data.toy.n_train=4", "data.toy.n_test=4",
            "trainer.enable_progress_bar=false", *extra]
