"""CLI start-up: the CPU time of the commands that should answer at once, next to an interpreter that imports a task.

Each command runs in a fresh interpreter (``python -m i2am.app.cli ...``) ``--repeats`` times; the figure is the
median of the child's user + system CPU seconds (less sensitive to a shared machine than wall time), with the wall
time beside it.

  python benchmarks/cli_startup.py
  python benchmarks/cli_startup.py --repeats 5

Targets: ``i2am --help``, ``i2am <task> --cfg job`` and ``i2am reproduce --help`` under 1 s of CPU each (they load
neither torch nor Lightning; tests/integration/test_tasks_other.py checks the imports). The last row, importing the
attribute task (torch, diffusers, Lightning, torchmetrics), is the floor of every command that runs a task.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "i2am --help": ["-m", "i2am.app.cli", "--help"],
    "i2am attribute --cfg job": ["-m", "i2am.app.cli", "attribute", "--cfg", "job"],
    "i2am reproduce --help": ["-m", "i2am.app.cli", "reproduce", "--help"],
    "python -c 'import i2am.app.tasks.attribute'": ["-c", "import i2am.app.tasks.attribute"],
}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(args: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh interpreter running ``args``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu, wall = child_cpu(), time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return child_cpu() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    print(f"{'command':<42} {'CPU s':>7} {'wall s':>7}   (median of {repeats})")
    for label, args in COMMANDS.items():
        runs = [measure(args) for _ in range(repeats)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{label:<42} {cpu:7.2f} {wall:7.2f}")


if __name__ == "__main__":
    main()
