"""Import a script of benchmarks/ as the scripts import each other: with benchmarks/ on sys.path."""
import importlib
import sys

from helpers.paths import REPO


def bench_module(name: str):
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)
