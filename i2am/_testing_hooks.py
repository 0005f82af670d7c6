"""Test-only fault injection: crash at a deterministic point, so tests can prove that a killed run resumes exactly.

``I2AM_FAULT_KILL_AFTER_SAMPLES=k`` makes the process SIGKILL itself right after it has written the done-marker of
its k-th sample (no cleanup, no flush: what is on disk then is what atomic writes guarantee). Unset, it costs one
environment lookup per sample.
"""
from __future__ import annotations

import os
import signal

KILL_AFTER_SAMPLES = "I2AM_FAULT_KILL_AFTER_SAMPLES"
_samples_done = 0


def sample_done() -> None:
    """Call right after a sample's done-marker is written."""
    global _samples_done
    limit = os.environ.get(KILL_AFTER_SAMPLES)
    if not limit:
        return
    _samples_done += 1
    if _samples_done >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
