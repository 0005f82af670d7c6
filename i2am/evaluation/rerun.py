"""The faithfulness and randomisation checks re-run the model through ``adapter.run_loop(inputs, sampler)`` (the
run's sampler, with the noise fixed by the sample id). That reproduces the attributed run for adapters whose
sampling *is* the sampler's loop, and for adapters that declare ``own_loop`` (their ``run_loop`` is their own
loop); any other adapter is refused with the reason, rather than compared against a trajectory it never took
(docs/faithfulness.md, "Models")."""
from __future__ import annotations

from i2am.evaluation.evaluator import SampleContext
from i2am.sampling.sampler import START_CODES


def regenerate(adapter, sampler, inputs, callback=None):
    """Final latents of one re-run of the model on prepared ``inputs``."""
    return adapter.run_loop(inputs, sampler, callback=callback)


def require_sampler_loop(adapter, sampler, check: str) -> None:
    """Raise when ``adapter`` samples with a start code the sampler's loop does not implement and has no loop of its
    own behind ``run_loop`` (``own_loop``)."""
    start = sampler.settings(adapter).get("start_code", "noise")
    if start in START_CODES or adapter.own_loop:
        return
    raise ValueError(
        f"{check}: {type(adapter).__name__} samples with start_code={start!r}, which the sampler's loop "
        f"({type(sampler).__name__}, start codes {START_CODES}) does not implement, and declares no loop of "
        f"its own (own_loop = False): re-runs through the sampler would be compared with a trajectory the "
        f"attributed run never took. Give the adapter a run_loop(inputs, sampler, callback) that is its sampling "
        f"loop and set own_loop = True (as PASD does); see docs/faithfulness.md, \"Models\"")


def in_subset(ctx: SampleContext, marker: str, limit: int) -> bool:
    """Whether this sample is among the first ``limit`` ones evaluated by the evaluator writing ``marker``."""
    if ctx.sample_dir is None:
        raise ValueError(f"the {marker} evaluator needs SampleContext.sample_dir (a per-sample folder)")
    root = ctx.sample_dir.parent
    done = [p for p in root.glob(f"*/{marker}") if p.parent.name != ctx.sample_dir.name] if root.is_dir() else []
    return len(done) < limit


def reruns_this_sample(ctx: SampleContext, check: str, marker: str, limit: int) -> bool:
    """Whether the evaluator ``check`` (writing ``marker`` in each sample's folder) re-runs the model on this sample:
    one of the first ``limit`` samples (a restart keeps the same subset). Raises when the context cannot re-run it."""
    if limit <= 0 or not in_subset(ctx, marker, limit):
        return False
    if ctx.adapter is None or ctx.sampler is None:
        raise ValueError(f"the {check} evaluator re-runs the model: SampleContext.adapter and .sampler must be set")
    require_sampler_loop(ctx.adapter, ctx.sampler, f"evaluator={check}")
    return True
