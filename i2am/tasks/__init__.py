"""The CLI tasks, registered in one place: name -> (module with ``run(cfg) -> dict``, one-line help)."""
from __future__ import annotations

import importlib

TASKS: dict[str, tuple[str, str]] = {
    "demo": ("i2am.tasks.demo", "end-to-end attribution on CPU with a tiny model; writes maps and figures to outputs/"),
}


def get_task(name: str):
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name][0])
