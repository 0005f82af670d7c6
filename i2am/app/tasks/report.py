"""`i2am report run_dir=<attribute run>`: the run's self-contained report.html (i2am.report.write_report)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from i2am.app.config_schema import ConfigValueError
from i2am.report import write_report

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    if not cfg.get("run_dir"):
        raise ConfigValueError("i2am report needs the run to report: add run_dir=<folder of a finished attribute run>")
    path = write_report(Path(cfg.run_dir), title=cfg.get("title"), num_samples=cfg.num_samples,
                        read_inputs=cfg.read_inputs)
    log.info("report -> %s", path)
    return {"report": str(path)}
