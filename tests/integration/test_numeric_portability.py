"""The `numeric`-marked tests pass on other CPU kernels and another thread count (docs/development.md, tolerances).

Each variant reruns `-m "numeric and not slow"` in a fresh pytest process with one thing changed from the suite's own
run, and first checks that torch really sees the change there:

- older CPU kernels: ATen's vectorised kernels at their DEFAULT (pre-AVX2) level, oneDNN (convolutions) capped at
  SSE4.1 and MKL (matrix products) at SSE4.2, as on a CPU without AVX2;
- the other thread count: OMP_NUM_THREADS=2 where the suite runs one thread per process (tests/conftest.py's default
  under pytest-xdist), 1 otherwise; the task subprocesses the tests start inherit it.
"""
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers.paths import REPO

ROOT = REPO
OLDER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}


def torch_sees(env: dict) -> tuple[str, int]:
    """(ATen CPU capability, intra-op thread count) of a fresh process that imports torch under ``env`` as
    tests/conftest.py does."""
    code = ("import os, torch; torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1'))); "
            "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    return out[0], int(out[1])


def variant(name: str) -> dict:
    if name == "older-cpu-kernels":
        return OLDER_KERNELS
    # idle OpenMP threads sleep instead of spinning (the cores are shared with other xdist workers); how the work is
    # split between threads, and so every result, does not depend on it
    return {"OMP_NUM_THREADS": "2" if torch.get_num_threads() == 1 else "1", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["older-cpu-kernels", "other-thread-count"])
def test_numeric_tests_pass_under(name, tmp_path):
    env = {**os.environ, **variant(name)}
    env.pop("PYTEST_ADDOPTS", None)
    here, there = torch_sees(dict(os.environ)), torch_sees(env)
    if name == "older-cpu-kernels":
        if here[0] == "DEFAULT":
            pytest.skip("this CPU already runs ATen's DEFAULT kernels: no other kernels to try")
        assert there[0] == "DEFAULT", there
    else:
        assert there[1] != here[1], (here, there)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:randomly",
                           "-m", "numeric and not slow", "-rA", f"--basetemp={tmp_path / 'basetemp'}", "tests"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000, check=False)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, f"{name}: {here} -> {there}\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    summary = proc.stdout.strip().splitlines()[-1]   # pytest's closing line: log lines above may say "failed"
    passed = re.match(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 0 and "failed" not in summary and "error" not in summary, summary
