"""The one timing harness of benchmarks/: warm-up, pinned threads, interleaved runs, paired ratios with median and
IQR, and a torch.profiler share of the time spent in one tool's own operations.

Why each piece: on a shared machine the load drifts during a run, so every repeat runs each variant once, in an order
that rotates between repeats, and a variant is compared with its baseline *within* a repeat (paired ratio) before
taking the median; the IQR says how far the repeats scatter. The profiler share (self time of the operations called
from the tool's own source files, over the self time of all operations) changes little with the load, because a
loaded core slows the tool's operations and the model's alike.

Imports torch and the standard library only: the peers' venv runs it without i2am.
"""
from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

MIN_REPEATS = 11
I2AM_OPS = ("i2am/engine/", "i2am/tracing/")   # i2am's own source files, for profiler_share
# The attention operators (SDPA and the aten kernels it dispatches to): the model's own work.
ATTENTION_OPS = ("scaled_dot_product",)


@dataclass(frozen=True)
class Summary:
    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def as_dict(self) -> dict:
        return {**asdict(self), "iqr": self.iqr}

    def ratio_text(self) -> str:
        return f"{self.median:.3f}x (IQR {self.q1:.3f}-{self.q3:.3f}, n={self.n})"


def summarize(values: Sequence[float]) -> Summary:
    """Median and quartiles (the inclusive method: the quartiles of 1, 2, ..., 5 are 2 and 4)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize: no values")
    if len(values) == 1:
        return Summary(values[0], values[0], values[0], 1)
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(median, q1, q3, len(values))


def paired_ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """values[i] / baseline[i]: each run against the baseline run of the same repeat."""
    if len(values) != len(baseline):
        raise ValueError(f"paired_ratios: {len(values)} values against {len(baseline)} baseline runs")
    return [v / b for v, b in zip(values, baseline)]


def pin_threads(threads: int | None = None) -> int:
    """Fix torch's intra-op threads (default: all cores this process may use) and use one inter-op thread."""
    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:   # only settable before the first parallel work; the intra-op count is what matters
        pass
    return threads


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device="cpu", clock: Callable[[], float] = time.perf_counter) -> float:
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


def interleaved(runs: Mapping[str, Callable[[], object]], repeats: int = MIN_REPEATS, warmup: int = 1,
                device="cpu", clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each run per repeat. Every run is called ``warmup`` times first (untimed); then each repeat calls
    every run once, starting one place further along each time, so no run always follows the same neighbour."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            times[name].append(timed(runs[name], device, clock))
    return times


def compare(times: Mapping[str, Sequence[float]], baseline: str) -> dict[str, Summary]:
    """Paired ratio summaries of every run against ``baseline`` (the baseline itself included: its seconds)."""
    out = {baseline: summarize(times[baseline])}
    for name, values in times.items():
        if name != baseline:
            out[name] = summarize(paired_ratios(values, times[baseline]))
    return out


_PYTHON_FRAME = re.compile(r"^(?P<file>[^<].*)\(\d+\): ")   # profiler names of Python calls: "path(line): func"


def _calling_file(event) -> str | None:
    """The innermost file outside torch that the operator was called from (torch's own wrappers are skipped, so an
    operation of nn.Linear counts for the model's file that called the layer)."""
    parent = event.cpu_parent
    while parent is not None:
        frame = _PYTHON_FRAME.match(parent.name)
        if frame and not frame["file"].startswith("torch/") and "/torch/" not in frame["file"]:
            return frame["file"]
        parent = parent.cpu_parent
    return None


def _within(event, op_names: Sequence[str]) -> bool:
    """Whether the operator or one it was called from is named by ``op_names`` (substrings)."""
    while event is not None and op_names:
        if any(name in event.name for name in op_names):
            return True
        event = event.cpu_parent
    return False


def profiler_share(fn: Callable[[], object], source_markers: Sequence[str], device="cpu",
                   model_ops: Sequence[str] = ()) -> float:
    """Share of operator self time spent in operations called from files whose path contains one of
    ``source_markers`` (e.g. "i2am/engine/"): CPU self time on CPU, device self time on CUDA. Python calls are
    recorded (``with_stack``) only to find each operator's calling file; their own time is not counted.
    ``model_ops``: operators (and those they call) whose name contains one of these count as the model's work
    wherever they are called from, e.g. ``ATTENTION_OPS`` for a tool whose pass-through runs the model's own
    attention kernel (i2am's capture calls it to read its log-sum-exp)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, with_stack=True) as prof:
        fn()
        synchronize(device)
    own = total = 0.0
    for event in prof.events():
        if _PYTHON_FRAME.match(event.name) or event.name.startswith("<built-in"):
            continue
        spent = event.self_device_time_total if cuda else event.self_cpu_time_total
        total += spent
        caller = _calling_file(event)
        if caller and any(marker in caller for marker in source_markers) and not _within(event, model_ops):
            own += spent
    return own / total if total else 0.0


def write_doc_block(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` with ``text``."""
    doc = path.read_text()
    start_mark, end_mark = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start_mark not in doc or end_mark not in doc:
        raise ValueError(f"{path}: no {start_mark} ... {end_mark} block to rewrite; add the two markers where the "
                         f"table belongs")
    start, end = doc.index(start_mark) + len(start_mark), doc.index(end_mark)
    path.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def machine_load() -> str:
    """The 1-minute load average against the cores this process may use (the load other jobs put on them)."""
    return f"load average {os.getloadavg()[0]:.1f} on {len(os.sched_getaffinity(0))} cores"
