"""`i2am correlate runs=[dir, ...]` (or `runs=<multirun folder>`): IMACS vs quality across finished runs."""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from i2am.app.tasks.common import run_dir
from i2am.runs import RunDir

log = logging.getLogger(__name__)


def expand_runs(runs) -> list[Path]:
    """Run directories: each entry is a run (holds metrics.json) or a folder of runs (a Hydra multirun folder)."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    found = []
    for entry in runs or []:
        path = Path(entry)
        if RunDir(path).is_finished():
            found.append(path)
        elif path.is_dir():
            found += sorted(p for p in path.iterdir() if RunDir(p).is_finished())
        else:
            raise FileNotFoundError(f"correlate: {path} is neither a run (metrics.json) nor a folder of runs")
    if len(found) < 3:
        raise ValueError(f"correlate needs at least 3 finished runs, found {len(found)}: {[str(p) for p in found]}")
    return found


def run(cfg: DictConfig) -> dict:
    out = run_dir(cfg)
    out.save_config(cfg)
    runs = expand_runs(cfg.runs)
    table = instantiate(cfg.correlation)(output_dir=out.path, run_dirs=runs)
    log.info("correlation over %d runs -> %s", len(runs), out.path / "correlation.csv")
    return {"n_runs": len(runs), **{f"pearson_{r['x']}_{r['y']}": r["pearson"] for r in table
                                    if isinstance(r.get("pearson"), float)}}
