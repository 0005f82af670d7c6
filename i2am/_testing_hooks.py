"""The one test seam of a run: a fault that kills the process at a deterministic point, so tests can prove that a
killed run resumes exactly (tests/integration/test_tasks_attribute.py).

``I2AM_FAULT_KILL_AFTER_SAMPLES=k`` makes ``i2am attribute`` SIGKILL itself right after it has written the
done-marker of its k-th sample (no cleanup, no flush: what is on disk then is what atomic writes guarantee). The seam
is explicit: the attribute task asks :func:`sample_done_hook` once and hands what it gets to the AttributionModule
(``on_sample_done``); unset, it gets None and nothing is called per sample.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable

KILL_AFTER_SAMPLES = "I2AM_FAULT_KILL_AFTER_SAMPLES"


def sample_done_hook() -> Callable[[str], None] | None:
    """A callable to run after each sample's done-marker when ``I2AM_FAULT_KILL_AFTER_SAMPLES`` is set, else None."""
    limit = os.environ.get(KILL_AFTER_SAMPLES)
    if not limit:
        return None
    done = []

    def kill_after_limit(sample_id: str) -> None:
        done.append(sample_id)
        if len(done) >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)

    return kill_after_limit
